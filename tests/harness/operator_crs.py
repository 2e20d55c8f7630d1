"""The operators' custom resources (DaskCluster, DaskAutoscaler, RayCluster) checked like built-in kinds.

- Schema: each CR is validated against the openAPIV3Schema of the pinned CRD itself (the files
  tools/crds.py extracted from the dask-kubernetes wheel and the KubeRay module), made strict the
  way ``kubectl --validate=strict`` is: an unknown field is an error instead of being pruned
  silently by the API server.
- Security: the pod templates inside a CR are wrapped as Deployments so the platform's rules in
  tests/harness/security.py judge them exactly as they judge every other workload.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema  # type: ignore[import-untyped]

from infra.components.operators.crds import DASK, KUBERAY, crd_schema

# apiVersion/kind -> the operator whose CRDs define it.
OPERATOR_KINDS: Mapping[tuple[str, str], str] = {
    ("kubernetes.dask.org/v1", "DaskCluster"): DASK,
    ("kubernetes.dask.org/v1", "DaskWorkerGroup"): DASK,
    ("kubernetes.dask.org/v1", "DaskAutoscaler"): DASK,
    ("kubernetes.dask.org/v1", "DaskJob"): DASK,
    ("ray.io/v1", "RayCluster"): KUBERAY,
    ("ray.io/v1", "RayJob"): KUBERAY,
    ("ray.io/v1", "RayService"): KUBERAY,
}


def is_operator_cr(obj: Mapping[str, Any]) -> bool:
    return (obj.get("apiVersion"), obj.get("kind")) in OPERATOR_KINDS


def _strict(schema: Any) -> Any:
    """Closes every object schema that lists its properties and does not keep unknown fields."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def _validator(api_version: str, kind: str) -> Any:
    operator = OPERATOR_KINDS[(api_version, kind)]
    schema = _strict(copy.deepcopy(crd_schema(operator, kind, api_version.rsplit("/", 1)[1])))
    # metadata is checked by the API server itself, not by the CRD's schema.
    schema.get("properties", {}).pop("metadata", None)
    schema["properties"]["apiVersion"] = {"type": "string"}
    schema["properties"]["kind"] = {"type": "string"}
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def cr_schema_errors(obj: Mapping[str, Any]) -> list[str]:
    """Errors of one CR against its pinned CRD ([] when valid)."""
    api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
    meta = obj.get("metadata") or {}
    ref = f"{kind}/{meta.get('name', '<no name>')}"
    errors = []
    if not meta.get("name"):
        errors.append(f"{ref}: metadata.name is missing")
    for error in sorted(_validator(api_version, kind).iter_errors(dict(obj)), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(part) for part in error.absolute_path) or "<root>"
        errors.append(f"{ref}: {path}: {error.message}")
    return errors


def _as_deployment(obj: Mapping[str, Any], where: str, template: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{meta.get('name')}[{where}]",
            "namespace": meta.get("namespace"),
            # The pod exists, not this wrapper: it is judged by the pod's own labels.
            "labels": dict((template.get("metadata") or {}).get("labels") or {}),
        },
        "spec": {"template": template},
    }


def pod_templates(obj: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, pod template)`` for every pod a CR makes the operator create.

    The dask-kubernetes operator labels scheduler and worker pods with the DaskCluster's labels;
    KubeRay uses each group's template metadata.
    """
    spec = obj.get("spec") or {}
    if obj.get("kind") == "DaskCluster":
        labels = dict((obj.get("metadata") or {}).get("labels") or {})
        yield "scheduler", {"metadata": {"labels": labels}, "spec": spec["scheduler"]["spec"]}
        yield "worker", {"metadata": {"labels": labels}, "spec": spec["worker"]["spec"]}
    elif obj.get("kind") == "RayCluster":
        yield "head", spec["headGroupSpec"]["template"]
        for group in spec.get("workerGroupSpecs") or []:
            yield f"group {group['groupName']}", group["template"]


def pods_as_workloads(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The CR's pod templates as Deployments, for tests/harness/security.py's rules."""
    return [_as_deployment(obj, where, template) for where, template in pod_templates(obj)]
