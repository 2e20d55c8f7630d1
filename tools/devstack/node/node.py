"""The real node, up and down, in order. Every step is idempotent, so a `make up` that was killed
is finished by the next one, and `down` works from whatever state the journal and pid files show.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.devstack.node import addons, configs, dnsprobe, hostnet, pki
from tools.devstack.node.configs import DaemonSpec
from tools.devstack.node.journal import Journal
from tools.devstack.node.layout import OWNER_FILE, NetworkPlan, NodeLayout
from tools.devstack.node.supervisor import DaemonError, Supervisor
from tools.devstack.paths import MissingToolError, StateDirs, require_tools
from tools.paths import VENV_BIN

NODE_TOOLS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kube-router",
    "kubectl",
    "crictl",
)
# Debian's packages (tools/install node-packages): binary -> package
SYSTEM_TOOLS = {
    "containerd": "containerd",
    "runc": "runc",
    "ctr": "containerd",
    "ip": "iproute2",
    "iptables": "iptables",
    "ipset": "ipset",
    "conntrack": "conntrack",
}
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE_DAEMONS = ("containerd", "kubelet", "kube-proxy", "kube-router")
PROVISIONER = "provisioner"
# Stop order: the node's own agents first (so nothing restarts pods), then the runtime, then
# the control plane.
STOP_ORDER = ("kube-router", "kube-proxy", PROVISIONER, "kubelet", "containerd", *reversed(CONTROL_PLANE))
HOST_DIRS = (Path("/var/log/containers"), Path("/var/lib/cni"), Path("/run/netns"))


class NodeError(RuntimeError):
    """A node step failed; the message says what, the log to read and how to recover."""


def find_system_tools(which: Callable[[str], str | None] = shutil.which) -> dict[str, Path]:
    found = {name: which(name) for name in SYSTEM_TOOLS}
    missing = sorted(n for n, p in found.items() if p is None)
    if missing:
        packages = " ".join(sorted({SYSTEM_TOOLS[n] for n in missing}))
        raise NodeError(
            f"missing host programs: {', '.join(missing)}; run: tools/install node-packages "
            f"(installs the Debian packages {packages})"
        )
    return {n: Path(p) for n, p in found.items() if p}


def owner_problem(owner_text: str | None, ours: Path) -> str | None:
    """Why this clone may not start a node, given the machine's owner file (None: it may)."""
    if not owner_text or not owner_text.strip():
        return None
    owner = Path(owner_text.strip())
    if owner == ours:
        return None
    if not (owner / "node" / "journal.json").is_file():
        return None  # that clone's node is gone (its state dir was deleted): the lock is stale
    stop = f"`make down` in {owner.parent}" if owner.name == ".state" else f"`QFRAME_STATE_DIR={owner} make down`"
    return (
        f"this machine already runs the real node of another clone (state dir {owner}); there is one "
        f"node per machine. Stop it first: {stop} (or use QFRAME_CLUSTER=kwok here)."
    )


@dataclass
class RealNode:
    state: StateDirs
    net: NetworkPlan = field(default_factory=NetworkPlan)

    @property
    def layout(self) -> NodeLayout:
        return NodeLayout.under(self.state.root)

    @property
    def kubeconfig(self) -> Path:
        return self.state.kubeconfig

    @property
    def supervisor(self) -> Supervisor:
        layout = self.layout
        return Supervisor(
            layout.pids, layout.logs, layout.pki / "ca.crt", (layout.pki / "admin.crt", layout.pki / "admin.key")
        )

    def journal(self) -> Journal:
        return Journal.load(self.layout.journal)

    def api_ready(self) -> bool:
        return self.supervisor.pid("kube-apiserver") is not None and self.supervisor.probe(
            f"https://{self.net.node_ip}:{self.net.apiserver_port}/readyz"
        )

    def exists(self) -> bool:
        return self.layout.journal.is_file() or any(self.supervisor.pid(n) for n in STOP_ORDER)

    # -- tools and specs ---------------------------------------------------------------------

    def tools(self) -> dict[str, Path]:
        return {**require_tools(*NODE_TOOLS), **find_system_tools()}

    def daemon_specs(self) -> dict[str, DaemonSpec]:
        tools = self.tools()
        specs = {s.name: s for s in configs.daemon_specs(self.layout, self.net, tools)}
        specs[PROVISIONER] = DaemonSpec(
            PROVISIONER,
            (
                str(VENV_BIN / "python"),
                "-m",
                "tools.devstack.node.provisioner",
                f"--kubeconfig={self.kubeconfig}",
                f"--kubectl={tools['kubectl']}",
                f"--root={self.layout.volumes}",
            ),
            ready="alive",
        )
        return specs

    # -- kubectl -----------------------------------------------------------------------------

    def kubectl(self, *args: str, input_text: str | None = None, timeout: float = 300) -> str:
        kubectl = require_tools("kubectl")["kubectl"]
        proc = subprocess.run(
            [str(kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            input=input_text,
            check=False,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise NodeError(f"kubectl {' '.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip()[-3000:]}")
        return proc.stdout

    def apply(self, objects: Sequence[Mapping[str, Any]]) -> None:
        document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=qframe-node",
            "-f",
            "-",
            input_text=json.dumps(document),
        )

    # -- up ----------------------------------------------------------------------------------

    def claim_machine(self) -> None:
        ours = self.state.root.resolve()
        text = OWNER_FILE.read_text() if OWNER_FILE.is_file() else None
        problem = owner_problem(text, ours)
        if problem:
            raise NodeError(problem)
        OWNER_FILE.parent.mkdir(parents=True, exist_ok=True)
        OWNER_FILE.write_text(f"{ours}\n")

    def prepare_host(self) -> None:
        """Baselines first (before any daemon can change something), then our own changes."""
        layout, net = self.layout, self.net
        layout.state.mkdir(parents=True, exist_ok=True)
        journal = self.journal()
        hostnet.record_baselines(journal, [layout.kubelet_root, layout.containerd_state, layout.containerd_root])
        for path in HOST_DIRS:
            hostnet.ensure_dir(journal, path)
        # Created by the CNI bridge plugin and by kubelet; recorded so down removes them.
        journal.record({"kind": "link", "name": net.pod_bridge})
        journal.record({"kind": "cgroup", "name": "kubepods"})
        hostnet.ensure_bridge(journal, net.node_bridge, f"{net.node_ip}/{net.node_prefix}")
        # Pod -> ClusterIP needs forwarding; bridged pod traffic must pass iptables for kube-proxy's
        # DNAT and kube-router's policy chains.
        hostnet.set_sysctl(journal, "net.ipv4.ip_forward", "1")
        hostnet.set_sysctl(journal, "net.bridge.bridge-nf-call-iptables", "1")

    def write_configs(self, sandbox_image: str) -> None:
        layout, net = self.layout, self.net
        pki.ensure_pki(layout.pki, net)
        for directory in (layout.config, layout.cni_conf_dir, layout.volumes, layout.logs, layout.pids):
            directory.mkdir(parents=True, exist_ok=True)
        server = f"https://{net.node_ip}:{net.apiserver_port}"
        for user, cert in pki.KUBECONFIG_USERS.items():
            config = pki.kubeconfig(
                server=server,
                ca_file=layout.pki / "ca.crt",
                cert_file=layout.pki / f"{cert}.crt",
                key_file=layout.pki / f"{cert}.key",
                user=user,
            )
            _write_json(layout.kubeconfig(user), config, mode=0o600)
        shutil.copyfile(layout.kubeconfig("admin"), self.kubeconfig)
        os.chmod(self.kubeconfig, 0o600)
        (layout.config / "containerd.toml").write_text(
            configs.to_toml(configs.containerd_config(layout, sandbox_image=sandbox_image))
        )
        _write_json(layout.cni_conf_dir / "10-qframe.conflist", configs.cni_conflist(layout, net))
        _write_json(layout.config / "kubelet.json", configs.kubelet_config(layout, net))
        _write_json(layout.config / "kube-proxy.json", configs.kube_proxy_config(layout, net))

    def _start(self, names: Sequence[str]) -> dict[str, float]:
        specs = self.daemon_specs()
        sup = self.supervisor
        for name in names:
            sup.start(specs[name])
        try:
            return {name: sup.wait_ready(specs[name]) for name in names}
        except DaemonError as exc:
            raise NodeError(f"{exc}\nTo start over: make down, then make up.") from None

    def start_control_plane(self) -> dict[str, float]:
        waits = self._start(["etcd"])
        waits.update(self._start(["kube-apiserver"]))
        waits.update(self._start(["kube-controller-manager", "kube-scheduler", "containerd"]))
        return waits

    def import_images(self, archives: Mapping[str, Path]) -> list[str]:
        """``ctr images import`` of each archive whose ref containerd does not have yet."""
        ctr = str(find_system_tools()["ctr"])
        base = [ctr, "-n", "k8s.io", "-a", str(self.layout.containerd_socket)]
        have = set(_run([*base, "images", "ls", "-q"]).split())
        imported = []
        for ref, archive in archives.items():
            if ref in have or f"docker.io/{ref}" in have:
                continue
            # --no-unpack would defer unpacking to the first pod start; unpack now, it is warm then.
            _run([*base, "images", "import", str(archive)], timeout=600)
            imported.append(ref)
        return imported

    def start_node_daemons(self) -> dict[str, float]:
        return self._start(["kubelet", "kube-proxy"])

    def start_policy_controller(self) -> dict[str, float]:
        """kube-router's firewall; it looks its Node up at start, so it runs once kubelet registered."""
        self.apply(addons.kube_router_rbac())
        return self._start(["kube-router"])

    def wait_node_ready(self, timeout_s: float = 90) -> float:
        start = time.monotonic()
        while True:
            try:
                node = json.loads(self.kubectl("get", "node", self.net.node_name, "-o", "json", timeout=10))
                conditions = {c["type"]: c for c in node["status"].get("conditions", [])}
                if conditions.get("Ready", {}).get("status") == "True":
                    return time.monotonic() - start
                reason = conditions.get("Ready", {}).get("message", "no Ready condition yet")
            except NodeError as exc:
                reason = str(exc)
            if time.monotonic() - start > timeout_s:
                raise NodeError(
                    f"node {self.net.node_name} not Ready after {timeout_s:.0f}s: {reason}\n"
                    f"read {self.supervisor.log_file('kubelet')} and {self.supervisor.log_file('containerd')}"
                )
            time.sleep(0.5)

    def apply_addons(self, coredns_image: str) -> None:
        self.apply(addons.all_addons(self.net, coredns_image))
        self._start([PROVISIONER])

    def wait_dns(self, timeout_s: float = 120) -> float:
        """Until kubernetes.default resolves through the kube-dns ClusterIP, queried from the host."""
        start = time.monotonic()
        name = f"kubernetes.default.svc.{self.net.cluster_domain}"
        last = "no answer yet"
        while time.monotonic() - start < timeout_s:
            try:
                if dnsprobe.resolve(self.net.cluster_dns, name) == [self.net.kubernetes_service_ip]:
                    return time.monotonic() - start
                last = "wrong or empty answer"
            except (OSError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.5)
        pods = self.kubectl("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "wide")
        raise NodeError(
            f"cluster DNS ({self.net.cluster_dns}) did not resolve {name} within {timeout_s:.0f}s ({last})\n"
            f"{pods}\nread: KUBECONFIG={self.kubeconfig} kubectl -n kube-system logs deploy/coredns"
        )

    # -- down --------------------------------------------------------------------------------

    def remove_pods(self) -> str:
        """Every pod sandbox through the CRI, so the CNI plugins undo their veths and rules."""
        if self.supervisor.pid("containerd") is None or not self.layout.containerd_socket.exists():
            return "containerd not running"
        try:
            crictl = require_tools("crictl")["crictl"]
        except MissingToolError as exc:
            return f"pods not removed through the CRI ({exc}); their shims are killed instead"
        endpoint = f"unix://{self.layout.containerd_socket}"
        connect = ["--config", os.devnull, "-r", endpoint, "-i", endpoint, "--timeout", "60s"]
        proc = subprocess.run(
            [str(crictl), *connect, "rmp", "--all", "--force"],
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
        )
        return (proc.stdout + proc.stderr).strip()

    def kill_leftover_shims(self) -> list[int]:
        """containerd's shims run in their own process groups; the ones of our socket are ours."""
        killed = []
        marker = str(self.layout.containerd_socket).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and marker in argv:
                try:
                    os.kill(int(proc.name), 9)
                    killed.append(int(proc.name))
                except ProcessLookupError:
                    pass
        return killed

    def down(self, report: Callable[[str], None] = lambda _: None) -> list[str]:
        """Stops everything, undoes the journal, removes the node's files; returns problems."""
        layout, sup = self.layout, self.supervisor
        for name in ("kube-router", "kube-proxy", PROVISIONER, "kubelet"):
            sup.stop(name)
        report(self.remove_pods())
        sup.stop("containerd")
        killed = self.kill_leftover_shims()
        if killed:
            report(f"killed {len(killed)} leftover containerd shims")
        for name in reversed(CONTROL_PLANE):
            sup.stop(name)
        for root in (layout.kubelet_root, layout.containerd_state, layout.containerd_root):
            hostnet.unmount_under(root)
        # Pod network namespaces containerd's CRI pinned (named cni-<uuid>); normally already gone
        # through `crictl rmp`, left only when containerd died first.
        for netns in sorted(Path("/run/netns").glob("cni-*")) if killed else []:
            subprocess.run(["umount", str(netns)], capture_output=True, check=False)
            netns.unlink(missing_ok=True)
        problems = hostnet.undo_all(self.journal())
        for path in (
            layout.kubelet_root,
            layout.containerd_state,
            layout.cni_data,
            layout.lib / "pod-logs",
            layout.lib / "opt",
            layout.etcd_data,
            layout.volumes,
            layout.config,
            layout.pids,
        ):
            shutil.rmtree(path, ignore_errors=True)
        layout.containerd_socket.unlink(missing_ok=True)
        Path(str(layout.containerd_socket) + ".ttrpc").unlink(missing_ok=True)
        self.kubeconfig.unlink(missing_ok=True)
        if not problems and OWNER_FILE.is_file() and OWNER_FILE.read_text().strip() == str(self.state.root.resolve()):
            OWNER_FILE.unlink()
            with contextlib.suppress(OSError):  # only if empty: another user's files stay
                layout.run.rmdir()
        return problems

    def rss_mib(self) -> dict[str, float]:
        sup = self.supervisor
        out = {}
        for name in (*CONTROL_PLANE, *NODE_DAEMONS, PROVISIONER):
            kib = sup.rss_kib(name)
            if kib is not None:
                out[name] = kib / 1024
        return out


def _write_json(path: Path, document: Mapping[str, Any], mode: int = 0o644) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=1)
    tmp.replace(path)


def _run(args: Sequence[str], timeout: float = 120) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=timeout)
    if proc.returncode != 0:
        raise NodeError(f"{' '.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout
