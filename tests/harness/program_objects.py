"""Every Kubernetes object a program run would create, as plain manifests.

Objects the program registers directly are taken from their inputs; each helm Release is expanded
by rendering its local chart with the real helm and the exact values the mock received. Rules
(schemas, security, namespaces) are then asserted over all of them at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.offline import REPO_ROOT, ProgramRun, Registered

from .charts import render_with_values
from .security import CLUSTER_SCOPED_KINDS

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


def _is_direct_object(resource: Registered) -> bool:
    return (
        resource.type.startswith("kubernetes:")
        and resource.type != HELM_RELEASE
        and "apiVersion" in resource.inputs
        and "kind" in resource.inputs
    )


def _chart_dir(chart: str) -> Path:
    path = Path(chart)
    # The program passes paths relative to its working directory; tests run from the repo root,
    # but resolve against it explicitly so a different cwd cannot pick another chart.
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def expand_release(release: Registered) -> list[dict[str, Any]]:
    inputs = release.inputs
    objects = render_with_values(
        _chart_dir(inputs["chart"]),
        inputs.get("values") or {},
        namespace=inputs["namespace"],
        release=inputs["name"],
    )
    for obj in objects:
        # helm install puts namespaced objects into --namespace; make that explicit so rules
        # over namespaces see where each object really lands.
        if obj.get("kind") not in CLUSTER_SCOPED_KINDS:
            obj.setdefault("metadata", {}).setdefault("namespace", inputs["namespace"])
    return objects


def rendered_objects(run: ProgramRun) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for resource in run.resources:
        if _is_direct_object(resource):
            objects.append(dict(resource.inputs))
        elif resource.type == HELM_RELEASE:
            objects.extend(expand_release(resource))
    return objects
