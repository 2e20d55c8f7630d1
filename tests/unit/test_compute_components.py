"""Dask and Ray clusters and their operators (issue 13): pure builders and the program under mocks.

Every rendered DaskCluster, DaskAutoscaler and RayCluster is validated against the openAPIV3Schema
of the pinned upstream CRD (tests/harness/operator_crs.py), and every pod template they carry is
judged by the platform's security rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from infra.components import dask, ray
from infra.components.jupyterhub import ComputeAddresses, UserPlatform, user_environment, user_pod_labels
from infra.components.operators import dask as dask_operator
from infra.components.operators import kuberay
from infra.components.operators.platform_env import ComputePlatform
from infra.config import DaskSettings, RaySettings, StackConfig, StackConfigError, parse_raw_config
from infra.images import image_ref
from infra.offline import REPO_ROOT, ProgramRun, load_stack_file, run_program
from infra.ops.kube import KIND_TO_RESOURCE
from infra.ops.scale import plan_dask, plan_ray
from infra.quantities import parse_quantity
from infra.scope import Scope
from tests.harness.operator_crs import cr_schema_errors, pods_as_workloads
from tests.harness.security import violations

pytestmark = pytest.mark.unit

SCOPE = Scope(namespace="qframe", labels={"team": "research"})
IMAGES = StackConfig().images
WORKER = image_ref(IMAGES, "worker")
MINIO = ComputePlatform(
    namespace="qframe",
    lake_bucket="qframe-data-lake",
    object_store_endpoint="http://minio.qframe.svc:9000",
    mlflow=True,
    postgres_in_cluster=True,
)
AWS = ComputePlatform(
    namespace="qframe", lake_bucket="lake", object_store_endpoint=None, mlflow=False, postgres_in_cluster=False
)

DASK_CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "zero-to-twenty": {"minWorkers": 0, "maxWorkers": 20, "workerThreads": 4},
    "fixed": {"minWorkers": 3, "maxWorkers": 3},
}
GPU = {"count": 2, "nodeSelector": {"accelerator": "a100"}, "tolerationKey": "nvidia.com/gpu"}
RAY_CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "zero-to-twenty": {"workerGroups": [{"name": "cpu", "minReplicas": 0, "maxReplicas": 20}]},
    "gpu-group": {
        "upscalingMode": "Aggressive",
        "idleTimeoutSeconds": 600,
        "workerGroups": [
            {"name": "cpu", "minReplicas": 1, "maxReplicas": 4},
            {"name": "gpu", "minReplicas": 0, "maxReplicas": 2, "gpu": GPU},
        ],
    },
}


def _dask(raw: Mapping[str, Any]) -> DaskSettings:
    return DaskSettings.model_validate(raw)


def _ray(raw: Mapping[str, Any]) -> RaySettings:
    return RaySettings.model_validate(raw)


def _env(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --------------------------------------------------------------------------------------------
# Custom resources: content, CRD validity, security of their pod templates
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", DASK_CONFIGS.values(), ids=DASK_CONFIGS.keys())
@pytest.mark.parametrize("platform", [MINIO, AWS], ids=["minio", "aws"])
def test_dask_custom_resources_match_the_pinned_crds_and_security_rules(
    raw: Mapping[str, Any], platform: ComputePlatform
) -> None:
    settings = _dask(raw)
    cluster = dask.build_cluster(SCOPE, settings, WORKER, platform)
    autoscaler = dask.build_autoscaler(SCOPE, settings)
    assert cr_schema_errors(cluster) == []
    assert cr_schema_errors(autoscaler) == []
    pods = pods_as_workloads(cluster)
    assert len(pods) == 2
    assert [v for pod in pods for v in violations(pod)] == []
    assert autoscaler["spec"] == {"cluster": "dask", "minimum": settings.min_workers, "maximum": settings.max_workers}
    # Workers start at the floor; the autoscaler owns the count from then on.
    assert cluster["spec"]["worker"]["replicas"] == settings.min_workers


def test_dask_worker_and_scheduler_containers() -> None:
    settings = _dask(DASK_CONFIGS["zero-to-twenty"])
    cluster = dask.build_cluster(SCOPE, settings, WORKER, MINIO)
    worker = cluster["spec"]["worker"]["spec"]["containers"][0]
    scheduler = cluster["spec"]["scheduler"]["spec"]["containers"][0]
    assert worker["image"] == scheduler["image"] == f"qframe/worker:{IMAGES.tags.worker}"
    assert worker["args"][:2] == ["dask", "worker"]
    assert worker["args"][worker["args"].index("--nthreads") + 1] == "4"
    assert worker["args"][worker["args"].index("--memory-limit") + 1] == str(1536 * 2**20)
    assert worker["resources"] == settings.worker_resources.model_dump(mode="json")
    assert scheduler["resources"] == settings.scheduler_resources.model_dump(mode="json")
    # The operator finds the scheduler's ports by these names.
    service_ports = {p["name"]: p["port"] for p in cluster["spec"]["scheduler"]["service"]["ports"]}
    assert service_ports == {"tcp-comm": 8786, "http-dashboard": 8787}
    env = _env(worker)
    assert env["QFRAME_LAKE_URL"] == "s3://qframe-data-lake/"
    assert env["QFRAME_S3_ENDPOINT_URL"] == "http://minio.qframe.svc:9000"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.qframe.svc:5000"
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "object-store-research", "key": "secret-key"}}
    assert env["QFRAME_CATALOG_URL"] == {"secretKeyRef": {"name": "postgres-catalog", "key": "uri"}}
    scheduler_env = _env(scheduler)
    assert "distributed.http.scheduler.api" in scheduler_env.pop("DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES")
    assert scheduler_env == env
    labels = cluster["metadata"]["labels"]
    for client in ("qframe.io/object-store-client", "qframe.io/mlflow-client", "qframe.io/postgres-client"):
        assert labels[client] == "true"
    # No credential in a plain value, ever.
    assert not [e for e in worker["env"] if "KEY" in e["name"] and "value" in e]


def test_dask_on_aws_uses_the_iam_role_and_no_store_labels() -> None:
    cluster = dask.build_cluster(SCOPE, _dask({}), WORKER, AWS)
    env = _env(cluster["spec"]["worker"]["spec"]["containers"][0])
    assert "AWS_ACCESS_KEY_ID" not in env
    assert "QFRAME_S3_ENDPOINT_URL" not in env
    assert "MLFLOW_TRACKING_URI" not in env
    assert not [k for k in cluster["metadata"]["labels"] if k.endswith("-client")]


@pytest.mark.parametrize("raw", RAY_CONFIGS.values(), ids=RAY_CONFIGS.keys())
@pytest.mark.parametrize("platform", [MINIO, AWS], ids=["minio", "aws"])
def test_ray_cluster_matches_the_pinned_crd_and_security_rules(
    raw: Mapping[str, Any], platform: ComputePlatform
) -> None:
    settings = _ray(raw)
    cluster = ray.build_cluster(SCOPE, settings, WORKER, platform)
    assert cr_schema_errors(cluster) == []
    pods = pods_as_workloads(cluster)
    assert len(pods) == 1 + len(settings.worker_groups)
    assert [v for pod in pods for v in violations(pod)] == []
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["upscalingMode"] == settings.upscaling_mode
    assert spec["autoscalerOptions"]["idleTimeoutSeconds"] == settings.idle_timeout_seconds
    assert spec["autoscalerOptions"]["resources"] == settings.autoscaler_resources.model_dump(mode="json")
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    for group in settings.worker_groups:
        rendered = groups[group.name]
        assert (rendered["minReplicas"], rendered["maxReplicas"]) == (group.min_replicas, group.max_replicas)
        # The autoscaler's field: a value from Pulumi conflicts with it on the next up.
        assert "replicas" not in rendered


def test_ray_gpu_group_lands_on_gpu_nodes_and_cpu_group_does_not() -> None:
    cluster = ray.build_cluster(SCOPE, _ray(RAY_CONFIGS["gpu-group"]), WORKER, MINIO)
    groups = {g["groupName"]: g["template"]["spec"] for g in cluster["spec"]["workerGroupSpecs"]}
    gpu, cpu = groups["gpu"], groups["cpu"]
    assert gpu["nodeSelector"] == {"accelerator": "a100"}
    assert gpu["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    resources = gpu["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "2"
    assert "nodeSelector" not in cpu
    assert "tolerations" not in cpu
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"]


def test_ray_probes_do_not_need_wget() -> None:
    """KubeRay's default probes run wget, which the worker image lacks; every Ray container has its own."""
    cluster = ray.build_cluster(SCOPE, _ray(RAY_CONFIGS["gpu-group"]), WORKER, MINIO)
    for _, template in [("head", cluster["spec"]["headGroupSpec"]["template"])] + [
        (g["groupName"], g["template"]) for g in cluster["spec"]["workerGroupSpecs"]
    ]:
        container = template["spec"]["containers"][0]
        for probe in ("readinessProbe", "livenessProbe"):
            assert "httpGet" in container[probe]
            assert "exec" not in container[probe]
    head = cluster["spec"]["headGroupSpec"]["template"]
    assert head["spec"]["containers"][0]["readinessProbe"]["httpGet"] == {"path": "/api/gcs_healthz", "port": 8265}
    ports = {p["name"]: p["containerPort"] for p in head["spec"]["containers"][0]["ports"]}
    assert ports == {"gcs-server": 6379, "dashboard": 8265, "client": 10001}
    # Only the head (its autoscaler sidecar) gets an API token.
    assert head["spec"]["automountServiceAccountToken"] is True
    for group in cluster["spec"]["workerGroupSpecs"]:
        assert group["template"]["spec"]["automountServiceAccountToken"] is False


def test_ray_processes_fork_without_grpc_fork_handlers() -> None:
    """The head's client proxier forks a server per client; with grpcio's fork handlers on, about one
    concurrent connect in ten died before exec on the real node and the sweep ran sequentially."""
    cluster = ray.build_cluster(SCOPE, _ray(RAY_CONFIGS["gpu-group"]), WORKER, MINIO)
    templates = [cluster["spec"]["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster["spec"]["workerGroupSpecs"]
    ]
    for template in templates:
        env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
        assert env["GRPC_ENABLE_FORK_SUPPORT"] == "0"
        assert "QFRAME_LAKE_URL" in env  # added to the platform's variables, not instead of them


def test_a_ray_worker_is_scheduled_on_what_its_group_requests() -> None:
    """A pod's request is max(sum of containers, biggest init container). KubeRay's injected init
    container asks a fixed 200m, which doubled the dev stack's 100m workers and left 2 of 4 scaled-up
    workers Pending on the 2-core node; the operator runs without it and workers bring a 10m wait."""
    operator = next(
        o
        for o in kuberay.build_objects(SCOPE, image_ref(IMAGES, "kuberay_operator"), "qframe")
        if o["kind"] == "Deployment"
    )
    env = operator["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "ENABLE_INIT_CONTAINER_INJECTION", "value": "false"} in env
    dev = parse_raw_config(load_stack_file(REPO_ROOT / "Pulumi.dev.yaml")).ray
    cluster = ray.build_cluster(SCOPE, dev, WORKER, MINIO)
    for group, spec in zip(dev.worker_groups, cluster["spec"]["workerGroupSpecs"], strict=True):
        pod = spec["template"]["spec"]
        (wait,) = pod["initContainers"]
        assert wait["command"][-2:] == ["ray-head-svc.qframe.svc", "6379"]
        for resource in ("cpu", "memory"):
            containers = sum(parse_quantity(c["resources"]["requests"][resource]) for c in pod["containers"])
            init = max(parse_quantity(c["resources"]["requests"][resource]) for c in pod["initContainers"])
            configured = parse_quantity(getattr(group.resources.requests, resource))
            assert max(containers, init) == configured, (group.name, resource)


def test_the_crd_check_is_real() -> None:
    """A misspelled field or a number where the dask CRD wants a named port fails, as the API would."""
    cluster = dask.build_cluster(SCOPE, _dask({}), WORKER, MINIO)
    cluster["spec"]["worker"]["replica"] = 2
    probe = cluster["spec"]["scheduler"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["port"] = 8787
    errors = cr_schema_errors(cluster)
    assert any("'replica' was unexpected" in e for e in errors), errors
    assert any("readinessProbe.httpGet.port: 8787 is not of type 'string'" in e for e in errors), errors
    autoscaler = dask.build_autoscaler(SCOPE, _dask({}))
    del autoscaler["spec"]["maximum"]
    assert any("'maximum' is a required property" in e for e in cr_schema_errors(autoscaler))
    raycluster = ray.build_cluster(SCOPE, _ray({}), WORKER, MINIO)
    raycluster["spec"]["autoscalerOptions"]["upscalingMode"] = "Eager"
    assert any("upscalingMode" in e for e in cr_schema_errors(raycluster))


# --------------------------------------------------------------------------------------------
# Config validation names the key
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "value", "key"),
    [
        ("dask", {"minWorkers": 5, "maxWorkers": 4}, "qframe-research:dask.minWorkers = 5: must not exceed maxWorkers"),
        ("dask", {"maxWorkers": 0}, "qframe-research:dask.maxWorkers = 0"),
        (
            "dask",
            {
                "workerResources": {
                    "requests": {"cpu": "1", "memory": "1Gi"},
                    "limits": {"cpu": "500m", "memory": "2Gi"},
                }
            },
            "qframe-research:dask.workerResources.requests.cpu",
        ),
        (
            "ray",
            {"workerGroups": [{"name": "cpu", "minReplicas": 3, "maxReplicas": 2}]},
            "qframe-research:ray.workerGroups[0].minReplicas = 3: must not exceed maxReplicas",
        ),
        (
            "ray",
            {
                "workerGroups": [
                    {
                        "name": "cpu",
                        "resources": {
                            "requests": {"cpu": "1", "memory": "256Mi"},
                            "limits": {"cpu": "1", "memory": "512Mi"},
                        },
                    }
                ]
            },
            "qframe-research:ray.workerGroups[0].resources.limits.memory",
        ),
        ("ray", {"idleTimeoutSeconds": 1}, "qframe-research:ray.idleTimeoutSeconds"),
        ("ray", {"workerGroups": [{"name": "Not_A_Label"}]}, "qframe-research:ray.workerGroups[0].name"),
    ],
)
def test_bad_compute_config_is_refused_naming_the_key(section: str, value: Any, key: str) -> None:
    with pytest.raises(StackConfigError) as caught:
        parse_raw_config({f"qframe-research:{section}": value})
    assert key in str(caught.value)


# --------------------------------------------------------------------------------------------
# RBAC, asserted exactly
# --------------------------------------------------------------------------------------------


def test_dask_operator_rbac_is_a_namespaced_role_plus_kopfs_read_only_cluster_rules() -> None:
    objects = dask_operator.build_objects(SCOPE, image_ref(IMAGES, "dask_operator"), "qframe")
    assert sorted(o["kind"] for o in objects) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    cluster_role = next(o for o in objects if o["kind"] == "ClusterRole")
    assert cluster_role["metadata"]["name"] == "dask-operator-qframe"
    assert cluster_role["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
    ]
    binding = next(o for o in objects if o["kind"] == "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "dask-operator", "namespace": "qframe"}]
    role = next(o for o in objects if o["kind"] == "Role")
    verbs = ["get", "list", "watch", "create", "patch", "delete"]
    assert role["rules"] == [
        {
            "apiGroups": ["kubernetes.dask.org"],
            "resources": [
                "daskclusters",
                "daskworkergroups",
                "daskworkergroups/scale",
                "daskjobs",
                "daskjobs/status",
                "daskautoscalers",
            ],
            "verbs": verbs,
        },
        {"apiGroups": [""], "resources": ["pods", "services"], "verbs": verbs},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": verbs},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
    ]
    args = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    # Without these two flags kopf would need cluster-wide peering and namespace rules.
    assert "--standalone" in args
    assert "--namespace=qframe" in args
    assert [v for o in objects for v in violations(o)] == []


def test_kuberay_operator_rbac_is_one_namespaced_role() -> None:
    objects = kuberay.build_objects(SCOPE, image_ref(IMAGES, "kuberay_operator"), "qframe")
    assert sorted(o["kind"] for o in objects) == [
        "Deployment",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    role = next(o for o in objects if o["kind"] == "Role")
    crud = ["get", "list", "watch", "create", "update", "patch", "delete"]
    assert role["rules"] == [
        {"apiGroups": ["ray.io"], "resources": ["rayclusters", "rayjobs", "rayservices"], "verbs": crud},
        {
            "apiGroups": ["ray.io"],
            "resources": ["rayclusters/status", "rayjobs/status", "rayservices/status"],
            "verbs": ["get", "update", "patch"],
        },
        {
            "apiGroups": ["ray.io"],
            "resources": ["rayclusters/finalizers", "rayjobs/finalizers", "rayservices/finalizers"],
            "verbs": ["update"],
        },
        {"apiGroups": [""], "resources": ["pods", "services"], "verbs": crud},
        {"apiGroups": [""], "resources": ["pods/status", "services/status"], "verbs": ["get", "update", "patch"]},
        {"apiGroups": [""], "resources": ["pods/resize"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "list", "watch", "create", "delete"]},
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["roles", "rolebindings"],
            "verbs": ["get", "list", "watch", "create", "update", "delete"],
        },
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": crud},
    ]
    args = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--watch-namespace=qframe" in args
    assert "--enable-leader-election=false" in args
    assert [v for o in objects for v in violations(o)] == []


def test_kuberay_role_covers_what_it_grants_the_autoscaler() -> None:
    """Kubernetes refuses a Role with rules its creator lacks: KubeRay's autoscaler Role (v1.5.0,
    controllers/ray/common/rbac.go) must be a subset of the operator's."""
    autoscaler_rules = [
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("", "pods", "patch"),
        ("", "pods/resize", "patch"),
        ("ray.io", "rayclusters", "get"),
        ("ray.io", "rayclusters", "patch"),
    ]
    granted = {
        (group, resource, verb)
        for rule in kuberay.RULES
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert [r for r in autoscaler_rules if r not in granted] == []


def test_notebook_users_get_exactly_what_kubecluster_needs() -> None:
    objects = dask.build_user_rbac(SCOPE)
    role = next(o for o in objects if o["kind"] == "Role")
    assert role["rules"] == [
        {
            "apiGroups": ["kubernetes.dask.org"],
            "resources": ["daskclusters", "daskworkergroups", "daskautoscalers"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        },
        {"apiGroups": ["kubernetes.dask.org"], "resources": ["daskworkergroups/scale"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    ]
    account = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "dask-users", "namespace": "qframe"}]


# --------------------------------------------------------------------------------------------
# NetworkPolicies, evaluated
# --------------------------------------------------------------------------------------------


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for expression in selector.get("matchExpressions") or []:
        assert expression["operator"] == "Exists", expression
        if expression["key"] not in labels:
            return False
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _allows(
    policies: Sequence[Mapping[str, Any]], direction: str, pod: Mapping[str, str], peer: Mapping[str, str], port: int
) -> bool:
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    selecting = [
        p for p in policies if direction in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], pod)
    ]
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            peer_ok = peers is None or any(_selects(p["podSelector"], peer) for p in peers if "podSelector" in p)
            ports = rule.get("ports")
            if peer_ok and (ports is None or any(p["port"] == port for p in ports)):
                return True
    return False


def _connects(
    policies: Sequence[Mapping[str, Any]], client: Mapping[str, str], server: Mapping[str, str], port: int
) -> bool:
    """Under the namespace's default-deny: both the client's egress and the server's ingress must allow."""
    return _allows(policies, "Egress", client, server, port) and _allows(policies, "Ingress", server, client, port)


NOTEBOOK = user_pod_labels(
    UserPlatform(
        namespace="qframe",
        lake_bucket="lake",
        object_store_endpoint=None,
        object_store_secret=None,
        mlflow=False,
        kafka_bootstrap=None,
        compute=ComputeAddresses(dask_scheduler="tcp://x:8786", ray_client="ray://x:10001"),
    )
)
STRANGER = {"app.kubernetes.io/name": "someone-else"}


def test_dask_traffic_allowed_and_refused() -> None:
    policies = dask.build_network_policies(SCOPE) + dask_operator.build_objects(
        SCOPE, image_ref(IMAGES, "dask_operator"), "qframe"
    )
    policies = [p for p in policies if p["kind"] == "NetworkPolicy"]
    scheduler = {"dask.org/cluster-name": "dask", "dask.org/component": "scheduler"}
    worker = {"dask.org/cluster-name": "dask", "dask.org/component": "worker"}
    user_worker = {"dask.org/cluster-name": "alice-1", "dask.org/component": "worker"}
    operator = dask_operator.selector_labels()
    assert _connects(policies, NOTEBOOK, scheduler, 8786)
    assert _connects(policies, NOTEBOOK, scheduler, 8787)
    assert _connects(policies, operator, scheduler, 8786)
    assert _connects(policies, worker, scheduler, 8786)
    assert _connects(policies, scheduler, worker, 40123)  # worker comm ports are random
    assert _connects(policies, user_worker, {"dask.org/cluster-name": "alice-1"}, 8786)
    assert not _connects(policies, STRANGER, scheduler, 8786)
    assert not _connects(policies, NOTEBOOK, scheduler, 22)
    assert not _connects(policies, operator, worker, 40123)


def test_ray_traffic_allowed_and_refused() -> None:
    policies = ray.build_network_policies(SCOPE)
    head = {"ray.io/cluster": "ray", "ray.io/node-type": "head"}
    worker = {"ray.io/cluster": "ray", "ray.io/node-type": "worker"}
    assert _connects(policies, NOTEBOOK, head, 10001)
    assert _connects(policies, NOTEBOOK, head, 8265)
    assert _connects(policies, worker, head, 6379)
    assert _connects(policies, head, worker, 12345)
    assert not _connects(policies, NOTEBOOK, head, 6379)
    assert not _connects(policies, NOTEBOOK, worker, 10001)
    assert not _connects(policies, STRANGER, head, 10001)


# --------------------------------------------------------------------------------------------
# The program under mocks
# --------------------------------------------------------------------------------------------

DEV = REPO_ROOT / "Pulumi.dev.yaml"


def _types(run: ProgramRun) -> list[str]:
    return [r.type for r in run.resources]


@pytest.fixture(scope="module")
def dev_run() -> ProgramRun:
    return run_program(DEV)


def test_dev_stack_deploys_operators_clusters_and_exports_addresses(dev_run: ProgramRun) -> None:
    types = _types(dev_run)
    for component in ("DaskOperator", "KubeRayOperator", "DaskCluster", "RayCluster"):
        assert types.count(f"qframe:compute:{component}") == 1
    assert types.count("kubernetes:kubernetes.dask.org/v1:DaskCluster") == 1
    assert types.count("kubernetes:kubernetes.dask.org/v1:DaskAutoscaler") == 1
    assert types.count("kubernetes:ray.io/v1:RayCluster") == 1
    # The only cluster-scoped RBAC: kopf's read-only namespace and CRD rules for the dask operator.
    cluster_roles = dev_run.of_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
    assert [r.name for r in cluster_roles if "operator" in r.name] == ["dask-operator-clusterrole"]
    # CRDs come from the extracted upstream files, one ConfigFile each.
    files = sorted(Path(r.inputs["file"]).name for r in dev_run.of_type("kubernetes:yaml/v2:ConfigFile"))
    assert files == [
        "daskautoscaler.yaml",
        "daskcluster.yaml",
        "daskjob.yaml",
        "daskworkergroup.yaml",
        "ray.io_rayclusters.yaml",
        "ray.io_rayjobs.yaml",
        "ray.io_rayservices.yaml",
    ]
    assert dev_run.outputs["dask_scheduler_address"] == "tcp://dask-scheduler.qframe.svc:8786"
    assert dev_run.outputs["dask_dashboard_url"] == "http://dask-scheduler.qframe.svc:8787/status"
    assert dev_run.outputs["ray_client_address"] == "ray://ray-head-svc.qframe.svc:10001"
    assert dev_run.outputs["ray_job_submission_address"] == "http://ray-head-svc.qframe.svc:8265"
    assert dev_run.outputs["ray_dashboard_url"] == "http://ray-head-svc.qframe.svc:8265"


def test_what_ops_scale_patches_is_set_back_by_the_next_pulumi_up(dev_run: ProgramRun) -> None:
    # `qframe-ops scale` makes its client a field manager of these objects; on the real node the next
    # up that changed a label then failed with a server-side-apply conflict on the atomic worker-group
    # list. The stack must win (force), as the command's printed `pulumi config set` lines promise.
    objects = [
        dict(r.inputs)
        for r in dev_run.resources
        if r.type in ("kubernetes:kubernetes.dask.org/v1:DaskAutoscaler", "kubernetes:ray.io/v1:RayCluster")
    ]
    patched = {
        (plan.resource, plan.name)
        for plan in [
            *plan_dask([o for o in objects if o["kind"] == "DaskAutoscaler"], 1, 3),
            *plan_ray([o for o in objects if o["kind"] == "RayCluster"], 1, 3, None),
        ]
    }
    assert patched == {("daskautoscalers", "dask"), ("rayclusters", "ray")}
    assert {(KIND_TO_RESOURCE[o["kind"]], o["metadata"]["name"]) for o in objects} == patched
    for obj in objects:
        assert obj["metadata"]["annotations"]["pulumi.com/patchForce"] == "true", obj["metadata"]


def test_clusters_wait_for_their_operator(dev_run: ProgramRun) -> None:
    for cr, operator in (
        ("kubernetes:ray.io/v1:RayCluster", "kuberay-operator"),
        ("kubernetes:kubernetes.dask.org/v1:DaskCluster", "dask-operator"),
    ):
        resource = dev_run.of_type(cr)[0]
        # A dependency on a component is a dependency on each of its children.
        assert any(urn.endswith(f"::{operator}-deployment") for urn in resource.depends_on), resource.depends_on


def test_jupyterhub_users_receive_the_exported_addresses(dev_run: ProgramRun) -> None:
    release = dev_run.one("kubernetes:helm.sh/v3:Release", "jupyterhub-release")
    text = str(release.inputs["values"])
    for value in (
        "tcp://dask-scheduler.qframe.svc:8786",
        "ray://ray-head-svc.qframe.svc:10001",
        "http://ray-head-svc.qframe.svc:8265",
        "qframe.io/dask-client",
        "qframe.io/ray-client",
    ):
        assert value in text


def test_jupyterhub_users_run_as_the_dask_users_account_the_stack_deploys(dev_run: ProgramRun) -> None:
    singleuser = dev_run.one("kubernetes:helm.sh/v3:Release", "jupyterhub-release").inputs["values"]["singleuser"]
    assert singleuser["serviceAccount"] == dask.USERS_SERVICE_ACCOUNT
    assert singleuser["serviceAccountPurpose"]
    accounts = [r.inputs for r in dev_run.of_type("kubernetes:core/v1:ServiceAccount")]
    assert dask.USERS_SERVICE_ACCOUNT in {a["metadata"]["name"] for a in accounts}
    (binding,) = [
        r.inputs
        for r in dev_run.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
        if r.inputs["metadata"]["name"] == dask.USERS_SERVICE_ACCOUNT
    ]
    assert binding["subjects"][0]["name"] == singleuser["serviceAccount"]


def test_without_dask_user_servers_get_no_service_account() -> None:
    run = run_program(DEV, overrides={"dask": {"enabled": False}})
    singleuser = run.one("kubernetes:helm.sh/v3:Release", "jupyterhub-release").inputs["values"]["singleuser"]
    assert (singleuser["serviceAccount"], singleuser["serviceAccountPurpose"]) == ("", "")


def test_user_environment_names() -> None:
    env, _ = user_environment(
        UserPlatform(
            namespace="qframe",
            lake_bucket="lake",
            object_store_endpoint=None,
            object_store_secret=None,
            mlflow=False,
            kafka_bootstrap=None,
            compute=ComputeAddresses(
                dask_scheduler="tcp://d:8786",
                dask_dashboard="http://d:8787/status",
                ray_client="ray://r:10001",
                ray_dashboard="http://r:8265",
            ),
        )
    )
    # qframe.research.settings reads QFRAME_DASK_ADDRESS and QFRAME_RAY_ADDRESS.
    assert env["QFRAME_DASK_ADDRESS"] == "tcp://d:8786"
    assert env["QFRAME_RAY_ADDRESS"] == "ray://r:10001"
    assert env["QFRAME_RAY_DASHBOARD_URL"] == "http://r:8265"
    assert env["QFRAME_DASK_DASHBOARD_URL"] == "http://d:8787/status"


@pytest.mark.parametrize("section", ["dask", "ray"])
def test_install_operator_false_skips_the_operator_but_keeps_the_cluster(section: str) -> None:
    run = run_program(DEV, overrides={section: {"installOperator": False}})
    types = _types(run)
    operator = {"dask": "DaskOperator", "ray": "KubeRayOperator"}[section]
    cluster = {"dask": "DaskCluster", "ray": "RayCluster"}[section]
    assert f"qframe:compute:{operator}" not in types
    assert f"qframe:compute:{cluster}" in types
    files = [Path(r.inputs["file"]).name for r in run.of_type("kubernetes:yaml/v2:ConfigFile")]
    assert not [f for f in files if (f.startswith("dask") if section == "dask" else f.startswith("ray"))]


def test_disabled_compute_deploys_nothing_and_exports_nothing() -> None:
    run = run_program(DEV, overrides={"dask": {"enabled": False}, "ray": {"enabled": False}})
    assert not [t for t in _types(run) if ":compute:" in t or "dask" in t or "ray.io" in t]
    assert not [k for k in run.outputs if k.startswith(("dask", "ray"))]


def test_every_image_the_stack_deploys_is_an_image_recipe() -> None:
    """`make up` builds and imports exactly these names; a config field name is not an image name."""
    from tools.devstack.node.images import stack_images  # noqa: PLC0415

    recipes = {p.name for p in (REPO_ROOT / "images").iterdir() if (p / "image.toml").is_file()}
    assert [name for name in stack_images() if name not in recipes] == []
    assert {"worker", "dask-operator", "kuberay-operator"} <= set(stack_images())
