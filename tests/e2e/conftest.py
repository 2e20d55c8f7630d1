"""The e2e tier: `make up`'s own code path on the real local node (real containers).

`python -m tools.devstack up` starts containerd, the control plane, kubelet, kube-proxy, the
NetworkPolicy firewall and CoreDNS on this machine, imports the images and runs `pulumi up` of the
dev stack; state and the Pulumi file backend live in a temp dir, so the tier never touches a
developer's own `.state/` or the committed stack files. There is one node per machine: a node left
running by `make up` in a clone makes this fixture fail with that clone's `make down` command.
After the session `down` must leave the host exactly as it found it (links, iptables chains,
ipsets, tracked sysctls, mounts).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.devstack.node import snapshot
from tools.devstack.node.node import RealNode
from tools.devstack.paths import StateDirs
from tools.devstack.pulumi_cli import PulumiWorkspace
from tools.paths import REPO_ROOT

# A cold first run builds every image (tools.images) before the node starts.
UP_TIMEOUT_S = 3600
DOWN_TIMEOUT_S = 900


@dataclass(frozen=True)
class DevStack:
    state: StateDirs
    cluster: RealNode
    workspace: PulumiWorkspace
    up_output: str

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig


def _devstack(command: str, state: StateDirs, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "QFRAME_CLUSTER")}
    env["QFRAME_STATE_DIR"] = str(state.root)
    env["COLUMNS"] = "200"  # rich wraps at 80 when piped; keep lines whole for the assertions
    return subprocess.run(
        [sys.executable, "-m", "tools.devstack", command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def devstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    state = StateDirs(tmp_path_factory.mktemp("devstack"))
    before = snapshot.take()
    try:
        up = _devstack("up", state, UP_TIMEOUT_S)
        assert up.returncode == 0, f"make up failed:\n{up.stdout}\n{up.stderr}"
        yield DevStack(state, RealNode(state), PulumiWorkspace(state, "dev"), up.stdout)
    finally:
        down = _devstack("down", state, DOWN_TIMEOUT_S)
        assert down.returncode == 0, f"make down failed:\n{down.stdout}\n{down.stderr}"
        left = before.differences(snapshot.take())
        assert left == [], "make down left the host changed:\n" + "\n".join(left)
