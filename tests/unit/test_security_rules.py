"""The security rules can fail: a compliant Deployment passes, and breaking any one rule is reported
with the rule's id, the object, the container and the field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness import security
from tests.harness.security import namespace_violations, violations

pytestmark = pytest.mark.unit

LABELS = {
    "app.kubernetes.io/name": "web",
    "app.kubernetes.io/instance": "research",
    "app.kubernetes.io/managed-by": "Helm",
}
SELECTOR = {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "research"}


def container(name: str = "app") -> dict[str, Any]:
    return {
        "name": name,
        "image": "registry.local/qframe/web:1.4.2",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
    }


def pod_spec() -> dict[str, Any]:
    init = container("init-schema")
    del init["livenessProbe"], init["readinessProbe"]
    return {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "automountServiceAccountToken": False,
        "initContainers": [init],
        "containers": [container()],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
    }


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": dict(LABELS)},
        "spec": {
            "selector": {"matchLabels": dict(SELECTOR)},
            "template": {"metadata": {"labels": dict(LABELS)}, "spec": pod_spec()},
        },
    }


def default_deny() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "labels": dict(LABELS)},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def app(obj: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = pod(obj)["containers"][0]
    return first


def init(obj: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = pod(obj)["initContainers"][0]
    return first


Mutation = Callable[[dict[str, Any]], None]

# (id, mutation, rule id expected, text the violation must contain)
BROKEN: list[tuple[str, Mutation, str, str]] = [
    (
        "pod-run-as-non-root-removed",
        lambda d: pod(d)["securityContext"].pop("runAsNonRoot"),
        "run-as-non-root",
        "container 'app': securityContext.runAsNonRoot",
    ),
    (
        "container-overrides-run-as-non-root",
        lambda d: app(d)["securityContext"].update(runAsNonRoot=False),
        "run-as-non-root",
        "container 'app'",
    ),
    ("run-as-user-0", lambda d: pod(d)["securityContext"].update(runAsUser=0), "run-as-non-root", "runAsUser is 0"),
    (
        "init-run-as-user-0",
        lambda d: init(d)["securityContext"].update(runAsUser=0),
        "run-as-non-root",
        "initContainer 'init-schema': securityContext.runAsUser is 0",
    ),
    (
        "privilege-escalation-unset",
        lambda d: app(d)["securityContext"].pop("allowPrivilegeEscalation"),
        "no-privilege-escalation",
        "allowPrivilegeEscalation",
    ),
    (
        "privilege-escalation-true",
        lambda d: app(d)["securityContext"].update(allowPrivilegeEscalation=True),
        "no-privilege-escalation",
        "container 'app'",
    ),
    (
        "init-privilege-escalation",
        lambda d: init(d)["securityContext"].pop("allowPrivilegeEscalation"),
        "no-privilege-escalation",
        "initContainer 'init-schema'",
    ),
    (
        "capabilities-not-dropped",
        lambda d: app(d)["securityContext"].pop("capabilities"),
        "drop-all-capabilities",
        "capabilities.drop must contain ALL",
    ),
    (
        "capability-added",
        lambda d: app(d)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        "drop-all-capabilities",
        "NET_ADMIN",
    ),
    (
        "seccomp-removed",
        lambda d: pod(d)["securityContext"].pop("seccompProfile"),
        "seccomp-runtime-default",
        "seccompProfile",
    ),
    (
        "seccomp-unconfined",
        lambda d: app(d)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "seccomp-runtime-default",
        "container 'app'",
    ),
    (
        "privileged",
        lambda d: app(d)["securityContext"].update(privileged=True),
        "not-privileged",
        "securityContext.privileged is true",
    ),
    ("no-requests", lambda d: app(d)["resources"].pop("requests"), "resources", "resources.requests.cpu is missing"),
    (
        "no-memory-limit",
        lambda d: app(d)["resources"]["limits"].pop("memory"),
        "resources",
        "resources.limits.memory is missing",
    ),
    (
        "init-no-limits",
        lambda d: init(d)["resources"].pop("limits"),
        "resources",
        "initContainer 'init-schema': resources.limits.cpu is missing",
    ),
    ("no-liveness", lambda d: app(d).pop("livenessProbe"), "probes", "livenessProbe is missing"),
    ("no-readiness", lambda d: app(d).pop("readinessProbe"), "probes", "readinessProbe is missing"),
    ("latest-tag", lambda d: app(d).update(image="registry.local/qframe/web:latest"), "image-pinned", "'latest'"),
    ("no-tag", lambda d: app(d).update(image="registry.local:5000/qframe/web"), "image-pinned", "no tag or digest"),
    ("init-latest", lambda d: init(d).update(image="busybox:latest"), "image-pinned", "initContainer"),
    ("no-image", lambda d: app(d).pop("image"), "image-pinned", "image is missing"),
    ("host-network", lambda d: pod(d).update(hostNetwork=True), "no-host-namespaces", "spec.hostNetwork"),
    ("host-pid", lambda d: pod(d).update(hostPID=True), "no-host-namespaces", "spec.hostPID"),
    ("host-ipc", lambda d: pod(d).update(hostIPC=True), "no-host-namespaces", "spec.hostIPC"),
    (
        "host-path",
        lambda d: pod(d)["volumes"].append({"name": "docker", "hostPath": {"path": "/var/run"}}),
        "no-host-path",
        "'docker'",
    ),
    (
        "token-automounted",
        lambda d: pod(d).update(automountServiceAccountToken=True),
        "no-service-account-token",
        "automountServiceAccountToken",
    ),
    (
        "no-name-label",
        lambda d: d["metadata"]["labels"].pop("app.kubernetes.io/name"),
        "standard-labels",
        "Deployment/web: metadata.labels['app.kubernetes.io/name']",
    ),
    (
        "no-instance-label",
        lambda d: d["metadata"]["labels"].pop("app.kubernetes.io/instance"),
        "standard-labels",
        "app.kubernetes.io/instance",
    ),
    (
        "no-managed-by-label",
        lambda d: d["metadata"]["labels"].pop("app.kubernetes.io/managed-by"),
        "standard-labels",
        "app.kubernetes.io/managed-by",
    ),
    (
        "no-pod-template-labels",
        lambda d: d["spec"]["template"]["metadata"].pop("labels"),
        "standard-labels",
        "pod template",
    ),
]


def test_compliant_deployment_has_no_violations() -> None:
    assert violations(deployment()) == []
    assert namespace_violations([deployment(), default_deny()]) == []


@pytest.mark.parametrize(("mutation", "rule", "text"), [pytest.param(*case[1:], id=case[0]) for case in BROKEN])
def test_each_broken_rule_is_reported(mutation: Mutation, rule: str, text: str) -> None:
    broken = deployment()
    mutation(broken)
    found = violations(broken)
    assert found, "the broken deployment passed"
    assert all(v.endswith(f"[{rule}]") for v in found), found
    assert any(text in v for v in found), found
    assert all(v.startswith("Deployment/web") for v in found)


def test_every_rule_function_is_exercised_by_a_broken_case() -> None:
    rule_ids = {case[2] for case in BROKEN}
    assert rule_ids >= {
        "run-as-non-root",
        "no-privilege-escalation",
        "drop-all-capabilities",
        "seccomp-runtime-default",
        "not-privileged",
        "resources",
        "probes",
        "image-pinned",
        "no-host-namespaces",
        "no-host-path",
        "no-service-account-token",
        "standard-labels",
    }


@pytest.mark.parametrize(
    ("kind", "wrap"),
    [
        ("StatefulSet", lambda t: {"serviceName": "web", "selector": {}, "template": t}),
        ("DaemonSet", lambda t: {"selector": {}, "template": t}),
        ("ReplicaSet", lambda t: {"selector": {}, "template": t}),
        ("Job", lambda t: {"template": t}),
        ("CronJob", lambda t: {"schedule": "@daily", "jobTemplate": {"spec": {"template": t}}}),
    ],
)
def test_every_pod_bearing_kind_is_checked(kind: str, wrap: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    template = deployment()["spec"]["template"]
    obj = {"apiVersion": "x", "kind": kind, "metadata": {"name": "w", "labels": dict(LABELS)}, "spec": wrap(template)}
    assert violations(obj) == []
    template["spec"]["containers"][0]["securityContext"]["privileged"] = True
    assert violations(obj) == [f"{kind}/w container 'app': securityContext.privileged is true [not-privileged]"]


def test_bare_pod_is_checked() -> None:
    spec = pod_spec()
    spec["containers"][0]["image"] = "web"
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": dict(LABELS)}, "spec": spec}
    assert violations(obj) == ["Pod/p container 'app': image 'web' has no tag or digest [image-pinned]"]


@pytest.mark.parametrize("kind", ["Job", "CronJob"])
def test_jobs_need_no_probes(kind: str) -> None:
    template = deployment()["spec"]["template"]
    del template["spec"]["containers"][0]["livenessProbe"], template["spec"]["containers"][0]["readinessProbe"]
    template["spec"]["restartPolicy"] = "Never"
    spec = (
        {"template": template}
        if kind == "Job"
        else {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}
    )
    obj = {"apiVersion": "batch/v1", "kind": kind, "metadata": {"name": "j", "labels": dict(LABELS)}, "spec": spec}
    assert violations(obj) == []


def test_init_containers_need_no_probes_but_regular_ones_do() -> None:
    d = deployment()
    assert "livenessProbe" not in init(d)
    assert violations(d) == []


def test_container_setting_wins_over_pod_setting() -> None:
    d = deployment()
    pod(d)["securityContext"] = {}
    app(d)["securityContext"].update(runAsNonRoot=True, seccompProfile={"type": "RuntimeDefault"})
    assert [v for v in violations(d) if "container 'app'" in v] == []
    assert any("initContainer 'init-schema'" in v and "[run-as-non-root]" in v for v in violations(d))


def test_token_allowed_when_the_need_is_annotated() -> None:
    d = deployment()
    pod(d)["automountServiceAccountToken"] = True
    d["spec"]["template"]["metadata"]["annotations"] = {security.TOKEN_NEED_ANNOTATION: "spawns user servers"}
    assert violations(d) == []


def test_service_account_forcing_token_is_reported() -> None:
    sa: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "hub", "labels": dict(LABELS)},
    }
    assert violations(sa) == []
    sa["automountServiceAccountToken"] = True
    assert [v.rsplit(" ", 1)[-1] for v in violations(sa)] == ["[no-service-account-token]"]


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("registry.local/qframe/web:1.4.2", True),
        ("registry.local:5000/qframe/web:1.4.2", True),
        ("web@sha256:" + "a" * 64, True),
        ("web:1.0@sha256:" + "b" * 64, True),
        ("registry.local:5000/qframe/web", False),
        ("web", False),
        ("web:latest", False),
        ("web@sha256:short", False),
        ("", False),
    ],
)
def test_image_pinning(image: str, pinned: bool) -> None:
    d = deployment()
    app(d)["image"] = image
    assert (violations(d) == []) is pinned


def test_cluster_scoped_objects_need_no_managed_by() -> None:
    labels = {k: v for k, v in LABELS.items() if k != "app.kubernetes.io/managed-by"}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "r", "labels": labels},
    }
    assert violations(role) == []
    role["kind"] = "Role"
    assert violations(role) == ["Role/r: metadata.labels['app.kubernetes.io/managed-by'] is missing [standard-labels]"]


def test_objects_without_labels_name_each_missing_label() -> None:
    found = violations({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "ns"}})
    assert found == [
        f"Service/ns/s: metadata.labels[{label!r}] is missing [standard-labels]"
        for label in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by")
    ]


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("db_password", True),
        ("PASSWORD", True),
        ("apiKey", True),
        ("api-key", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("tls.key", True),
        ("hub.token", True),
        ("client-secret", True),
        ("settings.yaml", False),
        ("keycloak.conf", False),
        ("monkey.yaml", False),
        ("tokenizer.json", False),
    ],
)
def test_secret_looking_configmap_keys(key: str, secret: bool) -> None:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": dict(LABELS)},
        "data": {key: "x"},
    }
    found = violations(cm)
    assert bool(found) is secret, found
    if secret:
        assert found == [
            f"ConfigMap/c: data[{key!r}] looks like a credential; put it in a Secret [no-secrets-in-configmaps]"
        ]


def test_binary_data_keys_are_checked_too() -> None:
    cm = {"kind": "ConfigMap", "metadata": {"name": "c", "labels": dict(LABELS)}, "binaryData": {"private.key": "AA=="}}
    assert ["[no-secrets-in-configmaps]" in v for v in violations(cm)] == [True]


def test_malformed_objects_do_not_crash_the_rules() -> None:
    obj: dict[str, Any] = {
        "kind": "Deployment",
        "metadata": None,
        "spec": {"template": {"spec": {"containers": [None]}}},
    }
    found = violations(obj)
    assert any("[standard-labels]" in v for v in found)
    assert any("image is missing" in v for v in found)
    assert violations({}) != []


# ---------------------------------------------------------------------------------------------
# namespace rules
# ---------------------------------------------------------------------------------------------


def test_workload_without_default_deny_is_reported() -> None:
    found = namespace_violations([deployment()], default_namespace="team-a")
    assert found == [
        "namespace team-a: runs workloads Deployment/web but has no default-deny NetworkPolicy "
        "(podSelector {}, policyTypes Ingress+Egress, no rules) [default-deny-network-policy]"
    ]


def test_no_workload_needs_no_policy() -> None:
    assert namespace_violations([default_deny()]) == []
    assert namespace_violations([]) == []


def _not_quite(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    policy = default_deny()
    change(policy["spec"])
    return policy


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(_not_quite(lambda s: s.update(policyTypes=["Ingress"])), id="ingress-only"),
        pytest.param(_not_quite(lambda s: s.update(podSelector={"matchLabels": {"a": "b"}})), id="selects-some-pods"),
        pytest.param(_not_quite(lambda s: s.update(ingress=[{}])), id="allows-ingress"),
        pytest.param(_not_quite(lambda s: s.update(egress=[{"to": [{"podSelector": {}}]}])), id="allows-egress"),
        pytest.param(_not_quite(lambda s: s.pop("podSelector")), id="no-selector"),
    ],
)
def test_policies_that_are_not_default_deny_do_not_count(policy: dict[str, Any]) -> None:
    assert len(namespace_violations([deployment(), policy])) == 1


def test_default_deny_counts_only_in_its_own_namespace() -> None:
    web = deployment()
    web["metadata"]["namespace"] = "team-b"
    deny = default_deny()
    deny["metadata"]["namespace"] = "team-a"
    found = namespace_violations([web, deny], default_namespace="team-a")
    assert len(found) == 1
    assert found[0].startswith("namespace team-b: runs workloads Deployment/team-b/web")
    deny["metadata"]["namespace"] = "team-b"
    assert namespace_violations([web, deny]) == []


def test_the_checkers_do_not_mutate_their_input() -> None:
    d = deployment()
    before = copy.deepcopy(d)
    violations(d)
    namespace_violations([d])
    assert d == before
