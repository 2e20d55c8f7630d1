"""The dask-kubernetes and KubeRay operators reconcile the stack's clusters on an API-server-only
cluster (kwok simulates the nodes, so pods become Ready without containers), each running as a local
process that authenticates with the token of the ServiceAccount the stack creates for it: every
API call they make is checked against exactly the Role the stack grants.

Per operator: the CRDs are the extracted upstream files; the rendered CRs create the scheduler or
head, its Service and the floor of workers; changing the ceiling is an in-place update of the live
CR; deleting the CR leaves no object of the cluster behind; the operator's log has no RBAC denial.
This file does not touch the real node (no node lock needed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.components import dask, ray
from infra.components.operators import dask as dask_operator
from infra.components.operators import kuberay
from infra.components.operators.crds import DASK, KUBERAY, crd_files
from infra.components.operators.platform_env import ComputePlatform
from infra.config import DaskSettings, RaySettings, StackConfig
from infra.images import image_ref
from infra.scope import Scope
from tools.devstack.cluster import LocalCluster
from tools.devstack.paths import StateDirs, require_tools
from tools.paths import TOOLS_BIN
from tools.services._net import LOOPBACK, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NAMESPACE = "qframe"
SCOPE = Scope(namespace=NAMESPACE, labels={"team": "research"})
IMAGES = StackConfig().images
PLATFORM = ComputePlatform(
    namespace=NAMESPACE, lake_bucket="lake", object_store_endpoint=None, mlflow=False, postgres_in_cluster=False
)
RBAC_DENIED = ("forbidden", "Forbidden", " 403")


@dataclass
class Api:
    cluster: LocalCluster
    tmp: Path

    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        return self.cluster.kubectl(*args, input_text=input_text)

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def apply(self, objects: list[dict[str, Any]]) -> None:
        self.cluster.apply(objects)

    def token_kubeconfig(self, account: str) -> Path:
        """A kubeconfig that authenticates as the ServiceAccount ``account`` of the namespace."""
        token = self.kubectl("create", "token", account, "-n", NAMESPACE, "--duration=1h").strip()
        admin = yaml.safe_load(self.cluster.kubeconfig.read_text())
        cluster = admin["clusters"][0]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account}}],
            "current-context": account,
        }
        path = self.tmp / f"{account}.kubeconfig"
        path.write_text(json.dumps(config))
        return path


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("compute-operators")
    cluster = LocalCluster(f"compute-{os.getpid()}", StateDirs(tmp / "state"), nodes=1, volumes=0)
    cluster.create()
    try:
        api = Api(cluster, tmp)
        api.kubectl("create", "namespace", NAMESPACE)
        for operator in (DASK, KUBERAY):
            for path in crd_files(operator):
                api.kubectl("apply", "--server-side", "--field-manager=qframe-e2e", "-f", str(path))
        api.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        yield api
    finally:
        cluster.delete()


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


def _start(command: list[str], kubeconfig: Path, log: Path) -> OperatorProcess:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=log.parent
        )
    return OperatorProcess(process, log)


def _operator_rbac(api: Api, objects: list[dict[str, Any]]) -> None:
    """The operator's ServiceAccount, Role and RoleBinding exactly as the stack renders them."""
    api.apply([o for o in objects if o["kind"] not in ("Deployment", "NetworkPolicy")])


def _until(what: str, check: Callable[[], Any], timeout_s: float = 180, log: OperatorProcess | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = log.text()[-4000:] if log else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(2)


def _items(api: Api, kind: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.json("get", kind, "-n", NAMESPACE, "-l", selector)["items"]
    return items


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _left(api: Api, selector: str, custom: str) -> list[str]:
    """What is left of a deleted cluster: its objects by label (pods still terminating count) and CRs."""
    kinds = ("deployments", "services", "pods", "daskworkergroups")
    left = [f"{kind}/{o['metadata']['name']}" for kind in kinds for o in _items(api, kind, selector)]
    left += [f"{custom}/{o['metadata']['name']}" for o in api.json("get", custom, "-n", NAMESPACE)["items"]]
    print("left:", left)
    return left


def _assert_no_rbac_denial(operator: OperatorProcess) -> None:
    # pods/portforward is how an operator outside the cluster reaches a scheduler; in its pod it
    # connects to the Service directly, so the stack grants no port-forward.
    denied = [
        line
        for line in operator.text().splitlines()
        if any(word in line for word in RBAC_DENIED) and "/portforward" not in line
    ]
    assert denied == [], "\n".join(denied[:20])


def test_dask_operator_reconciles_with_exactly_its_role(api: Api) -> None:
    objects = dask_operator.build_objects(SCOPE, image_ref(IMAGES, "dask_operator"), NAMESPACE)
    _operator_rbac(api, objects)
    health = free_port()
    operator = _start(
        [
            str(Path(sys.executable).parent / "kopf"),
            "run",
            "--standalone",
            f"--namespace={NAMESPACE}",
            f"--liveness=http://{LOOPBACK}:{health}/healthz",
            "-m",
            "dask_kubernetes.operator.controller",
        ],
        api.token_kubeconfig(dask_operator.NAME),
        api.tmp / "dask-operator.log",
    )
    try:
        settings = DaskSettings(min_workers=2, max_workers=4)
        cluster = dask.build_cluster(SCOPE, settings, image_ref(IMAGES, "worker"), PLATFORM)
        api.apply([cluster, dask.build_autoscaler(SCOPE, settings)])
        selector = "dask.org/cluster-name=dask"
        scheduler = _until(
            "the scheduler pod Ready",
            lambda: [p for p in _items(api, "pods", f"{selector},dask.org/component=scheduler") if _ready(p)],
            log=operator,
        )
        assert len(scheduler) == 1
        service = api.json("get", "service", "dask-scheduler", "-n", NAMESPACE)
        assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"tcp-comm": 8786, "http-dashboard": 8787}
        workers = _until(
            "the floor of workers Ready",
            lambda: (
                (w := [p for p in _items(api, "pods", f"{selector},dask.org/component=worker") if _ready(p)])
                and len(w) >= settings.min_workers
                and w
            ),
            log=operator,
        )
        assert len(workers) == settings.min_workers
        # Pods carry the stack's labels and the client labels the cluster CR carries.
        assert workers[0]["metadata"]["labels"]["team"] == "research"

        before = api.json("get", "daskautoscaler", "dask", "-n", NAMESPACE)
        cluster_before = api.json("get", "daskcluster", "dask", "-n", NAMESPACE)
        api.apply([dask.build_autoscaler(SCOPE, DaskSettings(min_workers=2, max_workers=6))])
        after = api.json("get", "daskautoscaler", "dask", "-n", NAMESPACE)
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["spec"]["maximum"] == 6
        live = api.json("get", "daskcluster", "dask", "-n", NAMESPACE)
        assert live["metadata"]["uid"] == cluster_before["metadata"]["uid"]

        _assert_no_rbac_denial(operator)
        # Outside the cluster the operator reaches a scheduler only by port-forward, and kwok's pods
        # have no process behind them: its autoscaler timer blocks and never releases kopf's
        # finalizer. So the operator is stopped, its finalizers dropped, and deletion is left to
        # Kubernetes' garbage collector through the owner references the operator set.
        owners = api.json("get", "daskautoscaler", "dask", "-n", NAMESPACE)["metadata"].get("ownerReferences") or []
        assert [o["kind"] for o in owners] == ["DaskCluster"], owners
        operator.stop()
        for kind in ("daskautoscaler", "daskcluster"):
            api.kubectl(
                "patch", kind, "dask", "-n", NAMESPACE, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
            )
        api.kubectl("delete", "daskcluster", "dask", "-n", NAMESPACE, "--wait=true", "--timeout=120s")
        _until("nothing of the cluster left", lambda: not _left(api, selector, "daskautoscalers"), log=operator)
    finally:
        operator.stop()


def test_kuberay_operator_reconciles_with_exactly_its_role(api: Api) -> None:
    binary = require_tools("kuberay-operator", bin_dir=TOOLS_BIN)["kuberay-operator"]
    objects = kuberay.build_objects(SCOPE, image_ref(IMAGES, "kuberay_operator"), NAMESPACE)
    _operator_rbac(api, objects)
    operator = _start(
        [
            str(binary),
            f"--watch-namespace={NAMESPACE}",
            "--enable-leader-election=false",
            f"--metrics-addr={LOOPBACK}:{free_port()}",
            f"--health-probe-bind-address={LOOPBACK}:{free_port()}",
        ],
        api.token_kubeconfig(kuberay.NAME),
        api.tmp / "kuberay-operator.log",
    )
    try:
        settings = RaySettings.model_validate({"workerGroups": [{"name": "cpu", "minReplicas": 2, "maxReplicas": 4}]})
        api.apply([ray.build_cluster(SCOPE, settings, image_ref(IMAGES, "worker"), PLATFORM)])
        selector = "ray.io/cluster=ray"
        head = _until(
            "the head pod Ready",
            lambda: [p for p in _items(api, "pods", f"{selector},ray.io/node-type=head") if _ready(p)],
            log=operator,
        )
        containers = {c["name"]: c for c in head[0]["spec"]["containers"]}
        # The in-tree autoscaler sidecar, with our resources and restricted context; our probes kept.
        assert containers["autoscaler"]["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
        assert containers["autoscaler"]["securityContext"]["readOnlyRootFilesystem"] is True
        assert "httpGet" in containers["ray-head"]["readinessProbe"]
        service = api.json("get", "service", "ray-head-svc", "-n", NAMESPACE)
        ports = {p["port"] for p in service["spec"]["ports"]}
        assert {6379, 8265, 10001} <= ports
        workers = _until(
            "the floor of workers",
            lambda: (w := _items(api, "pods", f"{selector},ray.io/node-type=worker")) and len(w) >= 2 and w,
            log=operator,
        )
        assert len(workers) == 2
        init = workers[0]["spec"].get("initContainers") or []
        assert all(c["securityContext"]["allowPrivilegeEscalation"] is False for c in init)
        # The operator could create the autoscaler's Role: it holds every rule it grants.
        assert api.json("get", "role", "ray", "-n", NAMESPACE)["rules"]

        before = api.json("get", "raycluster", "ray", "-n", NAMESPACE)
        bigger = RaySettings.model_validate({"workerGroups": [{"name": "cpu", "minReplicas": 2, "maxReplicas": 8}]})
        api.apply([ray.build_cluster(SCOPE, bigger, image_ref(IMAGES, "worker"), PLATFORM)])
        after = api.json("get", "raycluster", "ray", "-n", NAMESPACE)
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["spec"]["workerGroupSpecs"][0]["maxReplicas"] == 8
        assert {p["metadata"]["uid"] for p in head} <= {
            p["metadata"]["uid"] for p in _items(api, "pods", f"{selector},ray.io/node-type=head")
        }, "the head pod was replaced by a ceiling change"

        api.kubectl("delete", "raycluster", "ray", "-n", NAMESPACE, "--wait=true", "--timeout=120s")
        _until("nothing of the cluster left", lambda: not _left(api, selector, "rayclusters"), log=operator)
        _assert_no_rbac_denial(operator)
    finally:
        operator.stop()
