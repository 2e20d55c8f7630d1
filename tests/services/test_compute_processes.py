"""The exact commands, environment and probe paths the stack renders for Dask and Ray pods, run as
real local processes on 127.0.0.1 (issue 13).

- Dask: the DaskCluster's scheduler and worker arguments and the scheduler's HTTP routes; the
  probes' ``/health``; the HTTP API the operator uses to read the adaptive target and retire
  workers; a retired worker's results move to the remaining worker before it goes.
- Ray: a head started with the RayCluster's ``rayStartParams`` answers the probe paths the stack
  sets instead of KubeRay's wget probes (GCS health on the dashboard, raylet health on the agent).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from infra.components import dask, ray
from infra.components.operators.dask import DASHBOARD_PORT, SCHEDULER_PORT
from infra.components.operators.platform_env import ComputePlatform
from infra.config import StackConfig
from infra.images import image_ref
from infra.scope import Scope
from tools.services._net import LOOPBACK, free_port, http_get
from tools.services._process import ServiceProcess, child_env, stopped_on_exit

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

BIN = Path(sys.executable).parent
CFG = StackConfig()
PLATFORM = ComputePlatform(
    namespace="qframe", lake_bucket="lake", object_store_endpoint=None, mlflow=False, postgres_in_cluster=False
)
SCOPE = Scope(namespace="qframe")


def _cluster() -> dict[str, Any]:
    return dask.build_cluster(SCOPE, CFG.dask, image_ref(CFG.images, "worker"), PLATFORM)


def _local(args: list[str], ports: Mapping[str, str]) -> list[str]:
    """The rendered arguments with the pod's all-interfaces binding and ports moved to loopback."""
    out = []
    for arg in args:
        local = arg.replace("0.0.0.0", LOOPBACK)  # noqa: S104 - replaced, not bound
        out.append(ports.get(local, local))
    return out


def _dask_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's plain DASK_* variables (the QFRAME_* ones point at cluster services)."""
    return {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("DASK_") and "value" in e}


def _post_json(url: str, body: Mapping[str, Any]) -> Any:
    assert url.startswith(f"http://{LOOPBACK}:")
    request = urllib.request.Request(  # noqa: S310 - loopback http only
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback http only
        return json.loads(response.read())


def _ok(url: str) -> bool:
    status, body = http_get(url)
    return status == 200 and body == "ok"


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[tuple[str, str]]:
    container = _cluster()["spec"]["scheduler"]["spec"]["containers"][0]
    comm, dashboard = free_port(), free_port()
    args = _local(container["args"], {str(SCHEDULER_PORT): str(comm), f":{DASHBOARD_PORT}": f"{LOOPBACK}:{dashboard}"})
    assert args[:2] == ["dask", "scheduler"]
    process = ServiceProcess(
        "dask-scheduler",
        [str(BIN / "dask"), *args[1:]],
        tmp_path / "scheduler.log",
        fix="see the log",
        cwd=tmp_path,
        env=child_env(_dask_env(container)),
    )
    with stopped_on_exit(process):
        base = f"http://{LOOPBACK}:{dashboard}"
        process.wait_ready(lambda: _ok(f"{base}/health"), timeout_s=60, what="/health")
        yield f"tcp://{LOOPBACK}:{comm}", base


def _worker(tmp_path: Path, name: str, address: str) -> ServiceProcess:
    container = _cluster()["spec"]["worker"]["spec"]["containers"][0]
    dashboard = free_port()
    args = _local(container["args"], {f":{dask.WORKER_DASHBOARD_PORT}": f"{LOOPBACK}:{dashboard}"})
    # Kubernetes expands $(DASK_WORKER_NAME) from the variable the operator adds; so does this test.
    args = [name if a == "$(DASK_WORKER_NAME)" else a for a in args]
    assert args[:2] == ["dask", "worker"]
    env = child_env({**_dask_env(container), "DASK_SCHEDULER_ADDRESS": address, "DASK_WORKER_NAME": name})
    process = ServiceProcess(
        f"dask-worker-{name}",
        [str(BIN / "dask"), *args[1:], "--host", LOOPBACK],
        tmp_path / f"{name}.log",
        fix="see the log",
        cwd=tmp_path,
        env=env,
    )
    process.wait_ready(lambda: _ok(f"http://{LOOPBACK}:{dashboard}/health"), timeout_s=60, what="/health")
    return process


def test_dask_pods_commands_probes_and_the_operators_api(scheduler: tuple[str, str], tmp_path: Path) -> None:
    from distributed import Client  # noqa: PLC0415 - only this test needs it

    address, base = scheduler
    first = _worker(tmp_path, "dask-default-worker-a", address)
    second = _worker(tmp_path, "dask-default-worker-b", address)
    try:
        with Client(address, timeout=30) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(2, timeout=60)
            # The operator's autoscaler reads this (GET, scheduler HTTP API route rendered by the stack).
            status, body = http_get(f"{base}/api/v1/adaptive_target")
            assert status == 200
            assert json.loads(body)["workers"] <= 2
            # Results held by each worker (one of them is about to be retired), each on one worker only.
            held = [
                client.submit(lambda i: list(range(1000 + i)), i, workers=[address], pure=False)
                for i, address in enumerate(sorted(client.scheduler_info()["workers"]))
            ]
            assert [len(f.result(timeout=30)) for f in held] == [1000, 1001]
            # Scale-down as the operator does it: POST retire_workers with the count; the scheduler
            # picks the worker and moves its data first.
            retired = _post_json(f"{base}/api/v1/retire_workers", {"n": 1})
            assert len(retired) == 1
            deadline = time.monotonic() + 60
            while len(client.scheduler_info()["workers"]) != 1 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert len(client.scheduler_info()["workers"]) == 1
            # Moved off the retired worker before it closed: nothing recomputed, nothing lost.
            assert [f.status for f in held] == ["finished", "finished"]
            assert [len(f.result(timeout=30)) for f in held] == [1000, 1001]
            where = client.who_has(held)
            assert all(len(where[f.key]) >= 1 for f in held), where
    finally:
        first.stop()
        second.stop()


@contextmanager
def _removed(path: Path) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[tuple[int, int]]:
    cluster = ray.build_cluster(SCOPE, CFG.ray, image_ref(CFG.images, "worker"), PLATFORM)
    params = cluster["spec"]["headGroupSpec"]["rayStartParams"]
    gcs, dashboard, agent = free_port(), free_port(), free_port()
    flags = [f"--{key}={value}" for key, value in params.items() if key != "dashboard-host"]
    # The head listens on every interface in its pod; locally only on loopback.
    temp = Path("/tmp") / f"ray-h2-{os.getpid()}"  # Ray's socket paths must stay short
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--disable-usage-stats",
        f"--node-ip-address={LOOPBACK}",
        f"--port={gcs}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={agent}",
        f"--temp-dir={temp}",
        "--include-dashboard=true",
        *flags,
    ]
    process = ServiceProcess(
        "ray-head",
        command,
        tmp_path / "ray.log",
        fix="see the log",
        cwd=tmp_path,
        env=child_env({"RAY_USAGE_STATS_ENABLED": "0"}),
    )
    with stopped_on_exit(process), _removed(temp):
        process.wait_ready(
            lambda: http_get(f"http://{LOOPBACK}:{dashboard}/api/gcs_healthz")[0] == 200, timeout_s=120, what="gcs"
        )
        yield dashboard, agent


def test_ray_probe_paths_answer_on_a_head_started_with_the_rendered_params(ray_head: tuple[int, int]) -> None:
    dashboard, agent = ray_head
    cluster = ray.build_cluster(SCOPE, CFG.ray, image_ref(CFG.images, "worker"), PLATFORM)
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    worker = cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    ports = {ray.DASHBOARD_PORT: dashboard, ray.AGENT_PORT: agent}
    for probe in (head["readinessProbe"], head["livenessProbe"], worker["readinessProbe"]):
        get = probe["httpGet"]
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline:
            try:
                status, _ = http_get(f"http://{LOOPBACK}:{ports[get['port']]}{get['path']}")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(1)
        assert status == 200, get
