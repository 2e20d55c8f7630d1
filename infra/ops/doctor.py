"""``qframe-ops doctor``: the checks, each with the fix to print when it fails (pure over API JSON)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra.ops.services import NOT_DEPLOYED, ServiceStatus

PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
OPERATOR_CRDS = {
    "dask-operator": ("daskclusters.kubernetes.dask.org", "daskautoscalers.kubernetes.dask.org"),
    "ray-operator": ("rayclusters.ray.io",),
}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None
    """None: does not apply here (e.g. an operator the stack does not deploy)."""
    detail: str
    fix: str = ""

    def as_row(self) -> dict[str, Any]:
        result = "skip" if self.ok is None else ("ok" if self.ok else "FAIL")
        return {"check": self.name, "result": result, "detail": self.detail, "fix": "" if self.ok else self.fix}


def _version(text: str) -> str:
    match = re.search(r"v?(\d+\.\d+\.\d+)", text)
    return match.group(1) if match else ""


def tool_check(name: str, found: str | None, reported: str, pinned: str, install_hint: str) -> Check:
    """A tool on PATH at the pinned version (``reported`` is whatever its version command printed)."""
    if found is None:
        return Check(f"tool {name}", False, "not on PATH", install_hint)
    version = _version(reported)
    if pinned and version != pinned.removeprefix("v"):
        return Check(f"tool {name}", False, f"{found}: {version or 'unknown version'}, pinned {pinned}", install_hint)
    return Check(f"tool {name}", True, f"{found}: {version}")


def api_check(where: str, version: Mapping[str, Any] | None, error: str) -> Check:
    if version is None:
        return Check(
            "cluster reachable",
            False,
            error,
            "start the cluster (`make up`), or set KUBECONFIG / --context to a running one",
        )
    return Check("cluster reachable", True, f"{where}: Kubernetes {version.get('gitVersion', '?')}")


def namespace_check(namespace: str, found: Mapping[str, Any] | None) -> Check:
    if found is None:
        return Check(
            f"namespace {namespace}",
            False,
            "does not exist",
            "deploy the stack (`make up`), or pass --namespace (stack output `namespace`)",
        )
    return Check(f"namespace {namespace}", True, f"phase {(found.get('status') or {}).get('phase', '?')}")


def pod_security_check(namespace: str, found: Mapping[str, Any] | None) -> Check:
    labels = ((found or {}).get("metadata") or {}).get("labels") or {}
    level = labels.get(PSA_ENFORCE)
    if level != "restricted":
        return Check(
            "pod security",
            False,
            f"{PSA_ENFORCE}={level or '<unset>'}",
            f"kubectl label --overwrite namespace {namespace} {PSA_ENFORCE}=restricted "
            "(or `pulumi up`: the Tenancy component sets it)",
        )
    return Check("pod security", True, f"{PSA_ENFORCE}=restricted")


def is_default_deny(policy: Mapping[str, Any]) -> bool:
    """Selects every pod, restricts both directions, allows nothing."""
    spec = policy.get("spec") or {}
    return (
        not (spec.get("podSelector") or {})
        and {"Ingress", "Egress"} <= set(spec.get("policyTypes") or [])
        and not spec.get("ingress")
        and not spec.get("egress")
    )


def default_deny_check(namespace: str, policies: Sequence[Mapping[str, Any]]) -> Check:
    deny = [p for p in policies if is_default_deny(p)]
    if not deny:
        return Check(
            "default-deny policy",
            False,
            f"none among {len(policies)} NetworkPolicies",
            f"helm upgrade --install tenant-baseline charts/tenant-baseline -n {namespace} "
            "(or `pulumi up`: the Tenancy component installs it)",
        )
    return Check("default-deny policy", True, ", ".join(sorted(p["metadata"]["name"] for p in deny)))


def operator_checks(crds: Sequence[Mapping[str, Any]] | None, statuses: Sequence[ServiceStatus]) -> list[Check]:
    """Per operator: its CRDs installed and its Deployment ready, or 'not deployed' when neither is there."""
    served = {str((c.get("metadata") or {}).get("name")) for c in crds or []}
    by_name = {s.service: s for s in statuses}
    checks = []
    for operator, names in OPERATOR_CRDS.items():
        status = by_name.get(operator)
        present = [n for n in names if n in served]
        running = status is not None and status.state != NOT_DEPLOYED
        if not present and not running:
            checks.append(Check(operator, None, NOT_DEPLOYED))
            continue
        missing = [n for n in names if n not in served]
        if missing:
            checks.append(
                Check(
                    operator,
                    False,
                    f"CRDs missing: {', '.join(missing)}",
                    "run `pulumi up` (the operator component installs its CRDs), or tools/install's crd step",
                )
            )
        elif not running:
            checks.append(
                Check(
                    operator,
                    False,
                    "CRDs installed but no operator Deployment in the namespace",
                    "deploy it (`pulumi up`), or if the cluster runs it elsewhere, set the stack's skip switch",
                )
            )
        elif status is not None and not status.healthy:
            checks.append(
                Check(operator, False, "; ".join(status.problems), f"qframe-ops logs {operator}; kubectl describe")
            )
        else:
            checks.append(Check(operator, True, f"CRDs {', '.join(present)}; {status.ready if status else 0} ready"))
    return checks


def services_check(statuses: Sequence[ServiceStatus]) -> Check:
    bad = [s for s in statuses if not s.healthy]
    deployed = [s for s in statuses if s.state != NOT_DEPLOYED]
    if bad:
        return Check(
            "services ready",
            False,
            "; ".join(f"{s.service}: {', '.join(s.problems)}" for s in bad),
            "; ".join(f"qframe-ops logs {s.service}" for s in bad) + "; `qframe-ops status --watch` while it recovers",
        )
    return Check("services ready", True, f"{len(deployed)} deployed, all ready")


def releases_check(releases: Sequence[Mapping[str, Any]]) -> Check:
    bad = [r for r in releases if r.get("status") != "deployed"]
    if bad:
        return Check(
            "helm releases",
            False,
            ", ".join(f"{r.get('name')} {r.get('status')}" for r in bad),
            "qframe-ops history <release>, then `qframe-ops rollback <release>` or `pulumi up`",
        )
    return Check("helm releases", True, f"{len(releases)} deployed")
