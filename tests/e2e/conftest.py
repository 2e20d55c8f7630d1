"""The e2e tier: `make up`'s own code path against a real Kubernetes API server on 127.0.0.1.

One local cluster (kwok: real kube-apiserver, controller-manager, scheduler and etcd; simulated
nodes) and one Pulumi file backend per test session, both under a temp dir, so the tier never
touches a developer's own `make up` cluster or the committed stack files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.devstack.cli import LOCAL_CLUSTER_NAME
from tools.devstack.cluster import LocalCluster
from tools.devstack.paths import StateDirs
from tools.devstack.pulumi_cli import PulumiWorkspace
from tools.paths import REPO_ROOT


@dataclass(frozen=True)
class DevStack:
    state: StateDirs
    cluster: LocalCluster
    workspace: PulumiWorkspace
    up_output: str

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig


def _devstack(command: str, state: StateDirs) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "QFRAME_CLUSTER")}
    env["QFRAME_STATE_DIR"] = str(state.root)
    return subprocess.run(
        [sys.executable, "-m", "tools.devstack", command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="session")
def devstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    state = StateDirs(tmp_path_factory.mktemp("devstack"))
    cluster = LocalCluster(LOCAL_CLUSTER_NAME, state)
    try:
        up = _devstack("up", state)
        assert up.returncode == 0, f"make up failed:\n{up.stdout}\n{up.stderr}"
        yield DevStack(state, cluster, PulumiWorkspace(state, "dev"), up.stdout)
    finally:
        down = _devstack("down", state)
        cluster.delete()
        assert down.returncode == 0, f"make down failed:\n{down.stdout}\n{down.stderr}"
