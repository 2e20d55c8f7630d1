"""The project's security rules, checked on rendered Kubernetes objects.

Pure functions only: no helm, no I/O, no global state. The chart tests feed them what `helm template`
renders; the Pulumi tests will feed them the objects the program registers. Each rule is a small
function kept in a tuple (OBJECT_RULES, POD_RULES, CONTAINER_RULES, RUNNING_CONTAINER_RULES), so a
later rule is one function added to one tuple. Every violation is one line of the form

    <Kind>/<name> [container 'c']: <what is wrong and where> [<rule-id>]

so a failing test names the object, the container, the field and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# ---------------------------------------------------------------------------------------------
# Data the rules use; extend here rather than inside the rule bodies.
# ---------------------------------------------------------------------------------------------

# Where the pod spec sits in each pod-bearing kind, and whether it runs to completion (no probes).
POD_SPEC_PATHS: Mapping[str, tuple[tuple[str, ...], bool]] = {
    "Pod": ((), False),
    "Deployment": (("spec", "template"), False),
    "StatefulSet": (("spec", "template"), False),
    "DaemonSet": (("spec", "template"), False),
    "ReplicaSet": (("spec", "template"), False),
    "ReplicationController": (("spec", "template"), False),
    "PodTemplate": (("template",), False),
    "Job": (("spec", "template"), True),
    "CronJob": (("spec", "jobTemplate", "spec", "template"), True),
}

# Kinds that are not namespaced, so they carry no app.kubernetes.io/managed-by requirement.
CLUSTER_SCOPED_KINDS: frozenset[str] = frozenset(
    {
        "APIService",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "CSIDriver",
        "CSINode",
        "CustomResourceDefinition",
        "FlowSchema",
        "IngressClass",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)

NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"

# A pod (or its workload) that really talks to the Kubernetes API says so with this annotation,
# whose value says why (e.g. "spawns user servers"). Only then may it mount a service-account token.
TOKEN_NEED_ANNOTATION = "qframe.io/needs-service-account-token"

# Words that mark a ConfigMap key as a credential. Keys are split into words first (camelCase, -, _, .)
# so "apiKey", "db_password" and "tls.key" match while "keycloak.conf" or "monkey.yaml" do not.
SECRET_KEY_WORDS: frozenset[str] = frozenset(
    {"password", "passwd", "pwd", "secret", "secrets", "token", "tokens", "key", "keys", "apikey"}
)

REQUIRED_RESOURCES: tuple[str, ...] = ("cpu", "memory")
REQUIRED_PROBES: tuple[str, ...] = ("livenessProbe", "readinessProbe")

# ---------------------------------------------------------------------------------------------
# Small accessors that tolerate nulls and wrong shapes (a rendered object may be malformed; the
# schema checker reports that, these rules must not crash on it).
# ---------------------------------------------------------------------------------------------


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: object) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _dig(obj: Mapping[str, Any], path: Iterable[str]) -> Mapping[str, Any]:
    current = obj
    for key in path:
        current = _map(current.get(key))
    return current


def object_ref(obj: Mapping[str, Any]) -> str:
    """`Kind/name` (or `Kind/namespace/name`) for messages."""
    meta = _map(obj.get("metadata"))
    kind = obj.get("kind") or "<no kind>"
    name = meta.get("name") or meta.get("generateName") or "<no name>"
    namespace = meta.get("namespace")
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def _violation(where: str, text: str, rule: str) -> str:
    return f"{where}: {text} [{rule}]"


# ---------------------------------------------------------------------------------------------
# Contexts handed to the rules.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodContext:
    """One pod spec inside an object, with what the rules need to judge it."""

    where: str  # e.g. "Deployment/web"
    obj: Mapping[str, Any]  # the whole object (its annotations count for the token rule)
    template: Mapping[str, Any]  # {"metadata": ..., "spec": ...}; for a Pod the Pod itself
    run_to_completion: bool  # Jobs, CronJobs and pods with restartPolicy Never/OnFailure

    @property
    def spec(self) -> Mapping[str, Any]:
        return _map(self.template.get("spec"))

    @property
    def metadata(self) -> Mapping[str, Any]:
        return _map(self.template.get("metadata"))

    @property
    def security_context(self) -> Mapping[str, Any]:
        return _map(self.spec.get("securityContext"))


@dataclass(frozen=True)
class ContainerContext:
    """One container or initContainer of a pod."""

    pod: PodContext
    container: Mapping[str, Any]
    init: bool

    @property
    def where(self) -> str:
        noun = "initContainer" if self.init else "container"
        return f"{self.pod.where} {noun} {self.container.get('name', '<no name>')!r}"

    @property
    def security_context(self) -> Mapping[str, Any]:
        return _map(self.container.get("securityContext"))

    def effective(self, field: str) -> Any:
        """A field set on the container wins over the pod's securityContext (Kubernetes semantics)."""
        if field in self.security_context and self.security_context[field] is not None:
            return self.security_context[field]
        return self.pod.security_context.get(field)


ObjectRule = Callable[[Mapping[str, Any]], list[str]]
PodRule = Callable[[PodContext], list[str]]
ContainerRule = Callable[[ContainerContext], list[str]]


# ---------------------------------------------------------------------------------------------
# Object rules (every kind)
# ---------------------------------------------------------------------------------------------


def rule_standard_labels(obj: Mapping[str, Any]) -> list[str]:
    """Every object is findable and attributable by the recommended labels: selectors, cost reports,
    `kubectl get -l` and cleanup all rely on name/instance; managed-by tells who owns a namespaced
    object (Helm, Pulumi) before anyone edits it by hand."""
    labels = _map(_map(obj.get("metadata")).get("labels"))
    required = [NAME_LABEL, INSTANCE_LABEL]
    if obj.get("kind") not in CLUSTER_SCOPED_KINDS:
        required.append(MANAGED_BY_LABEL)
    return [
        _violation(object_ref(obj), f"metadata.labels[{label!r}] is missing", "standard-labels")
        for label in required
        if not labels.get(label)
    ]


def _key_words(key: str) -> set[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return {word.lower() for word in re.split(r"[^A-Za-z0-9]+", spaced) if word}


def rule_no_secrets_in_configmaps(obj: Mapping[str, Any]) -> list[str]:
    """Credentials belong in Secrets (RBAC-restricted, encryptable at rest, never printed by
    `kubectl describe`); a ConfigMap is readable by anyone who can read the namespace's config."""
    if obj.get("kind") != "ConfigMap":
        return []
    found: list[str] = []
    for section in ("data", "binaryData"):
        for key in _map(obj.get(section)):
            if _key_words(str(key)) & SECRET_KEY_WORDS:
                found.append(
                    _violation(
                        object_ref(obj),
                        f"{section}[{key!r}] looks like a credential; put it in a Secret",
                        "no-secrets-in-configmaps",
                    )
                )
    return found


def rule_service_account_token(obj: Mapping[str, Any]) -> list[str]:
    """A ServiceAccount that forces token mounting hands API credentials to every pod using it."""
    if obj.get("kind") != "ServiceAccount" or obj.get("automountServiceAccountToken") is not True:
        return []
    if _map(_map(obj.get("metadata")).get("annotations")).get(TOKEN_NEED_ANNOTATION):
        return []
    return [
        _violation(
            object_ref(obj),
            f"automountServiceAccountToken is true without the {TOKEN_NEED_ANNOTATION} annotation",
            "no-service-account-token",
        )
    ]


OBJECT_RULES: tuple[ObjectRule, ...] = (
    rule_standard_labels,
    rule_no_secrets_in_configmaps,
    rule_service_account_token,
)


# ---------------------------------------------------------------------------------------------
# Pod rules (once per pod spec)
# ---------------------------------------------------------------------------------------------


def rule_no_host_namespaces(pod: PodContext) -> list[str]:
    """Sharing the node's network, PID or IPC namespace lets a pod sniff traffic, signal or inspect
    other processes on the node: it escapes the pod boundary."""
    return [
        _violation(pod.where, f"spec.{field} is true", "no-host-namespaces")
        for field in ("hostNetwork", "hostPID", "hostIPC")
        if pod.spec.get(field) is True
    ]


def rule_no_host_path(pod: PodContext) -> list[str]:
    """A hostPath volume exposes the node's filesystem (kubelet credentials, container runtime
    socket) to the pod; research pods use PVCs, emptyDir and object storage instead."""
    return [
        _violation(pod.where, f"volume {_map(v).get('name')!r} uses hostPath", "no-host-path")
        for v in _seq(pod.spec.get("volumes"))
        if _map(v).get("hostPath") is not None
    ]


def rule_service_account_token_on_pod(pod: PodContext) -> list[str]:
    """Most pods never call the Kubernetes API; a mounted token is a credential an attacker inside
    the pod can use. Pods that need it (e.g. a hub that spawns servers) say so by annotation."""
    if pod.spec.get("automountServiceAccountToken") is not True:
        return []
    annotated = _map(pod.metadata.get("annotations")).get(TOKEN_NEED_ANNOTATION) or _map(
        _map(pod.obj.get("metadata")).get("annotations")
    ).get(TOKEN_NEED_ANNOTATION)
    if annotated:
        return []
    return [
        _violation(
            pod.where,
            f"spec.automountServiceAccountToken is true without the {TOKEN_NEED_ANNOTATION} annotation",
            "no-service-account-token",
        )
    ]


def rule_pod_labels(pod: PodContext) -> list[str]:
    """Pods are objects too once created: NetworkPolicies and Services select them by these labels."""
    if pod.template is pod.obj:  # a bare Pod: already covered by rule_standard_labels
        return []
    labels = _map(pod.metadata.get("labels"))
    return [
        _violation(pod.where, f"pod template metadata.labels[{label!r}] is missing", "standard-labels")
        for label in (NAME_LABEL, INSTANCE_LABEL)
        if not labels.get(label)
    ]


POD_RULES: tuple[PodRule, ...] = (
    rule_no_host_namespaces,
    rule_no_host_path,
    rule_service_account_token_on_pod,
    rule_pod_labels,
)


# ---------------------------------------------------------------------------------------------
# Container rules (every container and initContainer)
# ---------------------------------------------------------------------------------------------


def rule_run_as_non_root(c: ContainerContext) -> list[str]:
    """Root in a container is root on the node after any runtime escape; runAsNonRoot makes the
    kubelet refuse to start an image that would run as UID 0."""
    found: list[str] = []
    if c.effective("runAsNonRoot") is not True:
        found.append(
            _violation(
                c.where,
                "securityContext.runAsNonRoot must be true (on the container or the pod)",
                "run-as-non-root",
            )
        )
    if c.effective("runAsUser") == 0:
        found.append(_violation(c.where, "securityContext.runAsUser is 0 (root)", "run-as-non-root"))
    return found


def rule_no_privilege_escalation(c: ContainerContext) -> list[str]:
    """Without no_new_privs a setuid binary in the image can regain the privileges dropped below."""
    if c.security_context.get("allowPrivilegeEscalation") is False:
        return []
    return [_violation(c.where, "securityContext.allowPrivilegeEscalation must be false", "no-privilege-escalation")]


def rule_drop_all_capabilities(c: ContainerContext) -> list[str]:
    """Research code needs no Linux capabilities; the runtime's default set (NET_RAW, CHOWN, ...)
    only widens what an exploited process can do."""
    caps = _map(c.security_context.get("capabilities"))
    found: list[str] = []
    if "ALL" not in _seq(caps.get("drop")):
        found.append(_violation(c.where, "securityContext.capabilities.drop must contain ALL", "drop-all-capabilities"))
    if _seq(caps.get("add")):
        found.append(
            _violation(
                c.where,
                f"securityContext.capabilities.add must be empty, has {list(_seq(caps.get('add')))}",
                "drop-all-capabilities",
            )
        )
    return found


def rule_seccomp_runtime_default(c: ContainerContext) -> list[str]:
    """The runtime's default seccomp profile blocks rarely needed, often exploited syscalls."""
    profile = c.effective("seccompProfile")
    if _map(profile).get("type") == "RuntimeDefault":
        return []
    return [
        _violation(
            c.where,
            "securityContext.seccompProfile.type must be RuntimeDefault (on the container or the pod)",
            "seccomp-runtime-default",
        )
    ]


def rule_not_privileged(c: ContainerContext) -> list[str]:
    """A privileged container has every device and capability of the node."""
    if c.security_context.get("privileged") is True:
        return [_violation(c.where, "securityContext.privileged is true", "not-privileged")]
    return []


def rule_resources(c: ContainerContext) -> list[str]:
    """Requests let the scheduler place pods; limits stop one backtest from starving a node shared
    by other teams (and make ResourceQuota accounting possible)."""
    resources = _map(c.container.get("resources"))
    return [
        _violation(c.where, f"resources.{section}.{name} is missing", "resources")
        for section in ("requests", "limits")
        for name in REQUIRED_RESOURCES
        if _map(resources.get(section)).get(name) in (None, "")
    ]


_DIGEST = re.compile(r"@[A-Za-z0-9_+.-]+:[0-9a-fA-F]{32,}$")


def image_tag(image: str) -> str | None:
    """The tag of an image reference, or None; a registry port (`host:5000/x`) is not a tag."""
    reference = image.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def rule_image_pinned(c: ContainerContext) -> list[str]:
    """An unpinned image (no tag, or `latest`) changes under a running deployment: rollbacks,
    audits and air-gapped mirrors all need an exact reference."""
    image = c.container.get("image")
    if not isinstance(image, str) or not image.strip():
        return [_violation(c.where, "image is missing", "image-pinned")]
    if _DIGEST.search(image):
        return []
    tag = image_tag(image)
    if tag is None:
        return [_violation(c.where, f"image {image!r} has no tag or digest", "image-pinned")]
    if tag == "latest":
        return [_violation(c.where, f"image {image!r} uses the 'latest' tag", "image-pinned")]
    return []


def rule_probes(c: ContainerContext) -> list[str]:
    """Without a readiness probe a Service sends traffic to a pod that is still starting; without a
    liveness probe a hung process is never restarted."""
    return [
        _violation(c.where, f"{probe} is missing", "probes")
        for probe in REQUIRED_PROBES
        if not _map(c.container.get(probe))
    ]


CONTAINER_RULES: tuple[ContainerRule, ...] = (
    rule_run_as_non_root,
    rule_no_privilege_escalation,
    rule_drop_all_capabilities,
    rule_seccomp_runtime_default,
    rule_not_privileged,
    rule_resources,
    rule_image_pinned,
)

# Only for regular containers of long-running pods (not initContainers, Jobs, CronJobs).
RUNNING_CONTAINER_RULES: tuple[ContainerRule, ...] = (rule_probes,)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def pod_contexts(obj: Mapping[str, Any]) -> Iterator[PodContext]:
    """The pod specs inside one object (none for kinds that run no pods)."""
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in POD_SPEC_PATHS:
        return
    path, completes = POD_SPEC_PATHS[kind]
    template = _dig(obj, path) if path else obj
    restart = _map(template.get("spec")).get("restartPolicy")
    yield PodContext(
        where=object_ref(obj),
        obj=obj,
        template=template,
        run_to_completion=completes or restart in ("Never", "OnFailure"),
    )


def container_contexts(pod: PodContext) -> Iterator[ContainerContext]:
    for field, init in (("initContainers", True), ("containers", False)):
        for container in _seq(pod.spec.get(field)):
            yield ContainerContext(pod=pod, container=_map(container), init=init)


def is_workload(obj: Mapping[str, Any]) -> bool:
    """True for every kind that runs pods."""
    return obj.get("kind") in POD_SPEC_PATHS


def violations(obj: Mapping[str, Any]) -> list[str]:
    """Every security-rule violation of one rendered Kubernetes object (any kind)."""
    found: list[str] = []
    for object_rule in OBJECT_RULES:
        found.extend(object_rule(obj))
    for pod in pod_contexts(obj):
        for pod_rule in POD_RULES:
            found.extend(pod_rule(pod))
        for container in container_contexts(pod):
            for container_rule in CONTAINER_RULES:
                found.extend(container_rule(container))
            if not container.init and not pod.run_to_completion:
                for running_rule in RUNNING_CONTAINER_RULES:
                    found.extend(running_rule(container))
    return found


def is_default_deny(obj: Mapping[str, Any]) -> bool:
    """A NetworkPolicy selecting every pod, for both directions, that allows nothing."""
    if obj.get("kind") != "NetworkPolicy":
        return False
    spec = _map(obj.get("spec"))
    selector = spec.get("podSelector")
    if not isinstance(selector, Mapping) or any(selector.get(k) for k in ("matchLabels", "matchExpressions")):
        return False
    types = set(_seq(spec.get("policyTypes")))
    return {"Ingress", "Egress"} <= types and not _seq(spec.get("ingress")) and not _seq(spec.get("egress"))


def namespace_violations(objects: Sequence[Mapping[str, Any]], default_namespace: str = "") -> list[str]:
    """Rules over a set of objects: every namespace that runs a workload has a default-deny
    NetworkPolicy, so traffic is allowed only by explicit policies (a compromised notebook cannot
    reach the database or the internet by default).

    Objects without metadata.namespace (as `helm template` renders them) count as `default_namespace`.
    """

    def namespace_of(obj: Mapping[str, Any]) -> str:
        return str(_map(obj.get("metadata")).get("namespace") or default_namespace)

    denied = {namespace_of(o) for o in objects if is_default_deny(o)}
    workloads: dict[str, list[str]] = {}
    for obj in objects:
        if is_workload(obj):
            workloads.setdefault(namespace_of(obj), []).append(object_ref(obj))
    return [
        _violation(
            f"namespace {ns or '<release namespace>'}",
            "runs workloads "
            + ", ".join(refs)
            + " but has no default-deny NetworkPolicy (podSelector {}, policyTypes Ingress+Egress, no rules)",
            "default-deny-network-policy",
        )
        for ns, refs in sorted(workloads.items())
        if ns not in denied
    ]
