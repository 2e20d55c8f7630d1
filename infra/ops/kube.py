"""The Kubernetes API as the ops commands see it: JSON in, JSON out, by resource path.

``HttpKubeApi`` sends requests through the official client's ``ApiClient`` (kubeconfig, context,
auth plugins, TLS all handled there) and returns the API server's JSON untouched, so a recording of
those responses (``RecordingKubeApi``) can stand in for the cluster in the unit tier
(``RecordedKubeApi``). ``Cluster`` adds the verbs the commands use and turns API failures into
one-line ``OpsError``s: unreachable, unauthorised, forbidden by RBAC.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

from infra.ops.errors import OpsError

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 30
HTTP_NOT_FOUND = 404
HTTP_UNAUTHORIZED = 401
HTTP_FORBIDDEN = 403
HTTP_ERRORS_FROM = 400


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API (the part of the path before the namespace)."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None) -> str:
        prefix = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        ns = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{prefix}{ns}/{self.plural}" + (f"/{name}" if name else "")


# Only the kinds the commands read or patch: a closed table keeps requests (and recordings) fixed.
RESOURCES: dict[str, Resource] = {
    "namespaces": Resource("", "v1", "namespaces", namespaced=False),
    "pods": Resource("", "v1", "pods"),
    "services": Resource("", "v1", "services"),
    "events": Resource("", "v1", "events"),
    "persistentvolumeclaims": Resource("", "v1", "persistentvolumeclaims"),
    "configmaps": Resource("", "v1", "configmaps"),
    "serviceaccounts": Resource("", "v1", "serviceaccounts"),
    "deployments": Resource("apps", "v1", "deployments"),
    "statefulsets": Resource("apps", "v1", "statefulsets"),
    "jobs": Resource("batch", "v1", "jobs"),
    "networkpolicies": Resource("networking.k8s.io", "v1", "networkpolicies"),
    "ingresses": Resource("networking.k8s.io", "v1", "ingresses"),
    "roles": Resource("rbac.authorization.k8s.io", "v1", "roles"),
    "rolebindings": Resource("rbac.authorization.k8s.io", "v1", "rolebindings"),
    "limitranges": Resource("", "v1", "limitranges"),
    "secrets": Resource("", "v1", "secrets"),
    "customresourcedefinitions": Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False),
    "daskclusters": Resource("kubernetes.dask.org", "v1", "daskclusters"),
    "daskworkergroups": Resource("kubernetes.dask.org", "v1", "daskworkergroups"),
    "daskautoscalers": Resource("kubernetes.dask.org", "v1", "daskautoscalers"),
    "rayclusters": Resource("ray.io", "v1", "rayclusters"),
}

KIND_TO_RESOURCE = {
    "Namespace": "namespaces",
    "Pod": "pods",
    "Service": "services",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "ConfigMap": "configmaps",
    "ServiceAccount": "serviceaccounts",
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "Job": "jobs",
    "NetworkPolicy": "networkpolicies",
    "Ingress": "ingresses",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "LimitRange": "limitranges",
    "Secret": "secrets",
    "CustomResourceDefinition": "customresourcedefinitions",
    "DaskCluster": "daskclusters",
    "DaskWorkerGroup": "daskworkergroups",
    "DaskAutoscaler": "daskautoscalers",
    "RayCluster": "rayclusters",
}


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class KubeApi(Protocol):
    """Raw access: ``request`` returns the decoded JSON body (or text for logs), or raises ApiError."""

    @property
    def where(self) -> str: ...

    def request(
        self, method: str, path: str, query: Sequence[tuple[str, str]] = (), body: Any = None, content_type: str = ""
    ) -> Any: ...

    def stream(self, path: str, query: Sequence[tuple[str, str]] = ()) -> Iterator[str]: ...


def request_key(method: str, path: str, query: Sequence[tuple[str, str]] = ()) -> str:
    return f"{method} {path}" + (f"?{urlencode(list(query))}" if query else "")


def _decode(data: bytes) -> Any:
    text = data.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _api_error(status: int, reason: str, data: bytes) -> ApiError:
    body = _decode(data)
    message = body.get("message", "") if isinstance(body, dict) else str(body).strip()
    return ApiError(status, reason or "", message or reason or "")


class HttpKubeApi:
    """Requests through ``kubernetes.client.ApiClient`` built from a kubeconfig and context."""

    def __init__(self, *, context: str | None = None, kubeconfig: str | None = None) -> None:
        from kubernetes import client, config

        configuration = client.Configuration()
        # The client reads KUBECONFIG once at import; read it per connection so the current value counts.
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
        except config.ConfigException as exc:
            raise OpsError(
                f"no usable kubeconfig: {exc}",
                "set KUBECONFIG to the file `make up` prints (or pass --context NAME of a context in it)",
            ) from None
        except FileNotFoundError as exc:
            raise OpsError(f"kubeconfig not found: {exc.filename}", "set KUBECONFIG or pass --context") from None
        # Fail fast on an unreachable server instead of urllib3's default retries.
        configuration.retries = 0
        self._client = client.ApiClient(configuration)
        self._where = f"{configuration.host}" + (f" (context {context})" if context else "")

    @property
    def where(self) -> str:
        return self._where

    def _send(
        self, method: str, path: str, query: Sequence[tuple[str, str]], body: Any, content_type: str, *, stream: bool
    ) -> Any:
        import urllib3

        headers = {"Accept": "application/json, */*"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        params = self._client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        timeout = (CONNECT_TIMEOUT_S, None if stream else READ_TIMEOUT_S)
        try:
            return self._client.call_api(*params, _request_timeout=timeout)
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise OpsError(
                f"cluster unreachable at {self._where}: {reason}",
                "start it (`make up`), or point KUBECONFIG/--context at a running cluster",
            ) from None

    def request(
        self, method: str, path: str, query: Sequence[tuple[str, str]] = (), body: Any = None, content_type: str = ""
    ) -> Any:
        response = self._send(method, path, query, body, content_type, stream=False)
        data = response.read()
        if response.status >= HTTP_ERRORS_FROM:
            raise _api_error(response.status, response.reason, data)
        return _decode(data)

    def stream(self, path: str, query: Sequence[tuple[str, str]] = ()) -> Iterator[str]:
        response = self._send("GET", path, query, None, "", stream=True)
        if response.status >= HTTP_ERRORS_FROM:
            raise _api_error(response.status, response.reason, response.read())
        for chunk in response.response.stream(4096):
            yield chunk.decode("utf-8", errors="replace")


def _redacted(body: Any) -> Any:
    """Recordings get committed: Secret values never go in, only their keys."""
    if isinstance(body, dict):
        if body.get("kind") == "Secret":
            return {**body, "data": dict.fromkeys(body.get("data") or {}, "<redacted>")}
        if isinstance(body.get("items"), list):
            return {**body, "items": [_redacted(item) for item in body["items"]]}
    return body


class RecordingKubeApi:
    """Passes requests to a real API and keeps every answer (errors too) for the unit tier's fakes."""

    def __init__(self, inner: KubeApi) -> None:
        self._inner = inner
        self.responses: dict[str, dict[str, Any]] = {}

    @property
    def where(self) -> str:
        return self._inner.where

    def request(
        self, method: str, path: str, query: Sequence[tuple[str, str]] = (), body: Any = None, content_type: str = ""
    ) -> Any:
        key = request_key(method, path, query)
        try:
            result = self._inner.request(method, path, query, body, content_type)
        except ApiError as exc:
            self.responses[key] = {"status": exc.status, "reason": exc.reason, "message": exc.message}
            raise
        self.responses[key] = {"status": 200, "body": _redacted(result)}
        return result

    def stream(self, path: str, query: Sequence[tuple[str, str]] = ()) -> Iterator[str]:
        chunks = list(self._inner.stream(path, query))
        self.responses[request_key("STREAM", path, query)] = {"status": 200, "body": "".join(chunks)}
        yield from chunks

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.responses, indent=1, sort_keys=True) + "\n", encoding="utf-8")


class RecordedKubeApi:
    """Answers from a recording; a request that was never recorded is a test bug, said loudly."""

    def __init__(self, responses: Mapping[str, Mapping[str, Any]], where: str = "https://127.0.0.1:6443") -> None:
        self._responses = dict(responses)
        self._where = where
        self.requests: list[tuple[str, Any]] = []

    @classmethod
    def load(cls, path: Path) -> RecordedKubeApi:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    @property
    def where(self) -> str:
        return self._where

    def _answer(self, key: str) -> Any:
        if key not in self._responses:
            known = "\n  ".join(sorted(self._responses))
            raise KeyError(f"no recorded response for {key}; recorded:\n  {known}")
        answer = self._responses[key]
        if answer["status"] >= HTTP_ERRORS_FROM:
            raise ApiError(answer["status"], answer.get("reason", ""), answer.get("message", ""))
        return answer["body"]

    def request(
        self, method: str, path: str, query: Sequence[tuple[str, str]] = (), body: Any = None, content_type: str = ""
    ) -> Any:
        key = request_key(method, path, query)
        self.requests.append((key, body))
        return self._answer(key)

    def stream(self, path: str, query: Sequence[tuple[str, str]] = ()) -> Iterator[str]:
        key = request_key("STREAM", path, query)
        self.requests.append((key, None))
        yield self._answer(key)


MERGE_PATCH = "application/merge-patch+json"


class Cluster:
    """The verbs the commands need, with API errors turned into one-line OpsErrors."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    def _call(
        self,
        what: str,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "",
    ) -> Any:
        try:
            return self.api.request(method, path, query, body, content_type)
        except ApiError as exc:
            raise self._as_ops_error(what, exc) from None

    def _as_ops_error(self, what: str, exc: ApiError) -> OpsError:
        if exc.status == HTTP_FORBIDDEN:
            return OpsError(
                f"forbidden: {exc.message or what}",
                "ask a cluster admin for RBAC on it, or use --context with a user that has it",
            )
        if exc.status == HTTP_UNAUTHORIZED:
            return OpsError(
                f"unauthorised at {self.api.where}: {exc.message or exc.reason}",
                "your kubeconfig credentials were refused; refresh them or pick another --context",
            )
        return OpsError(f"{what} failed: {exc}")

    def list(self, resource: str, *, namespaced: bool = True, selector: str = "", fields: str = "") -> list[Any] | None:
        """Items of a kind in the namespace; None when the API does not serve the kind (CRD absent)."""
        res = RESOURCES[resource]
        query = [(k, v) for k, v in (("labelSelector", selector), ("fieldSelector", fields)) if v]
        try:
            body = self.api.request("GET", res.path(self.namespace if namespaced else None), query)
        except ApiError as exc:
            if exc.status == HTTP_NOT_FOUND:
                return None
            raise self._as_ops_error(f"list {resource}", exc) from None
        items: list[Any] = body.get("items") or []
        return items

    def get(self, resource: str, name: str, *, namespace: str | None = None) -> dict[str, Any] | None:
        res = RESOURCES[resource]
        try:
            found: dict[str, Any] = self.api.request("GET", res.path(namespace or self.namespace, name))
        except ApiError as exc:
            if exc.status == HTTP_NOT_FOUND:
                return None
            raise self._as_ops_error(f"get {resource}/{name}", exc) from None
        return found

    def patch(self, resource: str, name: str, patch: Any, content_type: str = MERGE_PATCH) -> dict[str, Any]:
        """A merge patch (dict) or, with ``application/json-patch+json``, a JSON patch (list of ops)."""
        res = RESOURCES[resource]
        patched: dict[str, Any] = self._call(
            f"patch {resource}/{name}", "PATCH", res.path(self.namespace, name), body=patch, content_type=content_type
        )
        return patched

    def version(self) -> dict[str, Any]:
        found: dict[str, Any] = self._call("read the server version", "GET", "/version")
        return found

    def logs(self, pod: str, *, container: str, tail: int, follow: bool) -> Iterator[str]:
        path = RESOURCES["pods"].path(self.namespace, pod) + "/log"
        query = [("container", container), ("tailLines", str(tail))]
        try:
            if follow:
                yield from self.api.stream(path, [*query, ("follow", "true")])
            else:
                text = self.api.request("GET", path, query)
                yield text if isinstance(text, str) else json.dumps(text)
        except ApiError as exc:
            raise self._as_ops_error(f"logs of {pod}/{container}", exc) from None
