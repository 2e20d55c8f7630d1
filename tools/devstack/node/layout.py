"""Where the real node keeps its files, and the network plan every config is built from.

Per-clone state (certificates, configs, logs, pid files, the journal of host changes, volume data)
lives in ``<state dir>/node``. Runtime directories that must have short paths (sockets: 108 bytes
at most) or that belong to the machine rather than a clone live under ``/run/qframe-node`` and
``/var/lib/qframe-node``: there is one node per machine, guarded by ``/run/qframe-node/owner``.
containerd's content store stays in ``/var/lib/qframe-node/containerd`` across `make down` as an
image cache (warm `make up` skips re-importing), everything else there is removed by down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RUN_DIR = Path("/run/qframe-node")
LIB_DIR = Path("/var/lib/qframe-node")
OWNER_FILE = RUN_DIR / "owner"


@dataclass(frozen=True)
class NetworkPlan:
    """Addresses of the node. The host-only bridge carries the node IP (there is no dummy link
    type on this kernel); pods sit on a second bridge managed by the CNI bridge plugin."""

    node_bridge: str = "qfnode0"
    node_ip: str = "10.250.0.1"
    node_prefix: int = 24
    pod_bridge: str = "qfcni0"
    pod_cidr: str = "10.244.0.0/16"
    node_pod_cidr: str = "10.244.0.0/24"
    service_cidr: str = "10.96.0.0/16"
    kubernetes_service_ip: str = "10.96.0.1"
    cluster_dns: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"
    apiserver_port: int = 6443
    node_name: str = "qframe-node"


@dataclass(frozen=True)
class NodeLayout:
    state: Path
    run: Path = RUN_DIR
    lib: Path = LIB_DIR

    @classmethod
    def under(cls, state_root: Path) -> NodeLayout:
        return cls(state=state_root / "node")

    # per-clone
    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def config(self) -> Path:
        return self.state / "config"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pids(self) -> Path:
        return self.state / "pids"

    @property
    def journal(self) -> Path:
        return self.state / "journal.json"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def volumes(self) -> Path:
        return self.state / "volumes"

    @property
    def cni_conf_dir(self) -> Path:
        return self.config / "cni"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state.parent / "kubeconfig"

    # machine-level
    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd"

    @property
    def containerd_root(self) -> Path:
        return self.lib / "containerd"

    @property
    def kubelet_root(self) -> Path:
        return self.lib / "kubelet"

    @property
    def cni_data(self) -> Path:
        return self.lib / "cni"

    def kubeconfig(self, user: str) -> Path:
        return self.config / f"{user}.kubeconfig"
