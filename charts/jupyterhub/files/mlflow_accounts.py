"""Every hub user gets an MLflow account of their own, made by the hub before each spawn.

Loaded by jupyterhub_config.py (mounted next to it) when hub.json's ``mlflow.enabled`` is true.
Before a user's server starts, the hub

1. creates the user in MLflow's basic-auth app through its admin REST API (``users/create``; when
   the user exists, ``users/update-password``), so the account and the Secret below always agree;
2. writes the Kubernetes Secret ``<prefix><slug>-<hash>`` with the keys ``username`` and
   ``password`` (create, or replace when it exists);
3. adds ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` to the user's pod as
   ``secretKeyRef``s to that Secret: the password never appears in the pod spec.

The password is an HMAC of the user name under a key only the hub holds (``QFRAME_MLFLOW_USER_KEY``
from the hub's Secret), so it can be re-derived on every spawn: the hub never reads a Secret back,
and a second spawn changes nothing. Everything here is idempotent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

from kubernetes_asyncio.client.rest import ApiException
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

CREATE = "/api/2.0/mlflow/users/create"
UPDATE_PASSWORD = "/api/2.0/mlflow/users/update-password"  # noqa: S105 - an API path, not a credential
TIMEOUT_S = 20.0


class MlflowAccountError(RuntimeError):
    """MLflow refused to create or update a user; the spawn fails with this message."""


def user_password(key: str, username: str) -> str:
    """The user's MLflow password: 64 hex characters derived from the hub's key (MLflow wants >= 12)."""
    if not key:
        raise MlflowAccountError("QFRAME_MLFLOW_USER_KEY is empty; the hub Secret's mlflow-user-key must be set")
    return hmac.new(key.encode(), b"mlflow-user\0" + username.encode(), hashlib.sha256).hexdigest()


def secret_name(prefix: str, username: str) -> str:
    """A DNS-1123 name per user; the hash keeps users apart whose names differ only in case or symbols."""
    slug = re.sub(r"[^a-z0-9]+", "-", username.lower()).strip("-")[:30].strip("-") or "user"
    return f"{prefix}{slug}-{hashlib.sha256(username.encode()).hexdigest()[:10]}"


def secret_manifest(
    *, name: str, namespace: str, username: str, password: str, labels: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**labels, "app.kubernetes.io/component": "mlflow-credentials"},
            "annotations": {"qframe.io/mlflow-user": username},
        },
        "stringData": {"username": username, "password": password},
    }


def tracking_env(name: str) -> dict[str, Any]:
    """KubeSpawner environment entries (EnvVar specs) reading the user's login from their Secret."""
    return {
        variable: {"valueFrom": {"secretKeyRef": {"name": name, "key": key}}}
        for variable, key in (("MLFLOW_TRACKING_USERNAME", "username"), ("MLFLOW_TRACKING_PASSWORD", "password"))
    }


class MlflowAccounts:
    """The hub's side of the per-user MLflow accounts (see the module docstring)."""

    def __init__(
        self,
        *,
        url: str,
        admin_username: str,
        admin_password: str,
        key: str,
        secret_prefix: str,
        labels: dict[str, str],
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.secret_prefix = secret_prefix
        self.labels = dict(labels)
        token = base64.b64encode(f"{admin_username}:{admin_password}".encode()).decode()
        self._auth = f"Basic {token}"

    async def _call(self, method: str, path: str, body: dict[str, str]) -> tuple[int, dict[str, Any]]:
        request = HTTPRequest(
            self.url + path,
            method=method,
            body=json.dumps(body),
            headers={"Authorization": self._auth, "Content-Type": "application/json"},
            request_timeout=TIMEOUT_S,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as exc:
            raise MlflowAccountError(f"MLflow at {self.url} is not reachable: {exc}") from exc
        try:
            payload = json.loads(response.body or b"{}")
        except ValueError:
            payload = {"message": (response.body or b"")[:200].decode(errors="replace")}
        return response.code, payload if isinstance(payload, dict) else {}

    async def ensure_account(self, username: str) -> str:
        """Creates the user, or resets an existing user's password to the derived one; returns it."""
        password = user_password(self.key, username)
        body = {"username": username, "password": password}
        code, payload = await self._call("POST", CREATE, body)
        if code == 200:
            return password
        if payload.get("error_code") != "RESOURCE_ALREADY_EXISTS":
            raise MlflowAccountError(
                f"MLflow refused to create user {username!r}: HTTP {code} {payload.get('message', '')}".strip()
            )
        code, payload = await self._call("PATCH", UPDATE_PASSWORD, body)
        if code != 200:
            raise MlflowAccountError(
                f"MLflow refused to set the password of {username!r}: HTTP {code} {payload.get('message', '')}".strip()
            )
        return password

    async def write_secret(self, api: Any, namespace: str, manifest: dict[str, Any]) -> None:
        """Create, or replace when it exists (RBAC: secrets create and update, nothing else)."""
        try:
            await api.create_namespaced_secret(namespace, manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise
            await api.replace_namespaced_secret(manifest["metadata"]["name"], namespace, manifest)

    async def pre_spawn_hook(self, spawner: Any) -> None:
        username = spawner.user.name
        password = await self.ensure_account(username)
        name = secret_name(self.secret_prefix, username)
        manifest = secret_manifest(
            name=name, namespace=spawner.namespace, username=username, password=password, labels=self.labels
        )
        await self.write_secret(spawner.api, spawner.namespace, manifest)
        spawner.environment = {**spawner.environment, **tracking_env(name)}
        spawner.log.info("MLflow account of %s ready; its login is in Secret %s", username, name)
