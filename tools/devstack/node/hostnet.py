"""Host changes of the node, each recorded in the journal before it is made, and their undo."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from tools.devstack.node.journal import Entry, Journal, iptables_undo_commands, mounts_under, undo_order

# Every sysctl the node's processes may change: kubelet's kernel tunables, kube-proxy's and the CNI
# bridge plugin's forwarding and bridge-netfilter switches. Recorded before up, restored on down.
TRACKED_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
)
IPTABLES = {"ipv4": ("iptables-save", "iptables"), "ipv6": ("ip6tables-save", "ip6tables")}


class HostError(RuntimeError):
    """A host command failed; the message has the command and its output."""


def run(args: Sequence[str], *, check: bool = True, input_text: str | None = None) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False, input=input_text, timeout=120)
    if check and proc.returncode != 0:
        raise HostError(f"{' '.join(args)} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def read_sysctl(key: str) -> str | None:
    path = sysctl_path(key)
    return path.read_text().strip() if path.exists() else None


def write_sysctl(key: str, value: str) -> None:
    sysctl_path(key).write_text(value + "\n")


def snapshot_sysctls(keys: Sequence[str] = TRACKED_SYSCTLS) -> dict[str, str | None]:
    return {k: read_sysctl(k) for k in keys}


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


# ---------------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------------


def record_baselines(journal: Journal, mount_roots: Sequence[Path]) -> None:
    """What the node's processes will change on their own: sysctls, iptables, ipsets, mounts."""
    for key in TRACKED_SYSCTLS:
        old = read_sysctl(key)
        if old is not None:
            journal.record({"kind": "sysctl", "key": key, "old": old})
    for family, (save, _) in IPTABLES.items():
        if shutil.which(save):
            journal.record({"kind": "iptables", "family": family, "save": run([save])})
    if shutil.which("ipset"):
        journal.record({"kind": "ipsets", "names": sorted(run(["ipset", "list", "-n"]).split())})
    for root in mount_roots:
        journal.record({"kind": "mounts", "under": str(root)})


def set_sysctl(journal: Journal, key: str, value: str) -> None:
    old = read_sysctl(key)
    if old is None:
        raise HostError(f"sysctl {key} does not exist on this kernel (needed: {value}); load its module")
    journal.record({"kind": "sysctl", "key": key, "old": old})
    if old != value:
        write_sysctl(key, value)


def ensure_bridge(journal: Journal, name: str, address: str) -> None:
    """A bridge with ``address`` (CIDR form): the node's host-only network."""
    journal.record({"kind": "link", "name": name})
    if not link_exists(name):
        run(["ip", "link", "add", name, "type", "bridge"])
    if address not in run(["ip", "-o", "addr", "show", "dev", name]):
        run(["ip", "addr", "add", address, "dev", name])
    run(["ip", "link", "set", name, "up"])


def ensure_dir(journal: Journal, path: Path) -> None:
    """A directory outside the state dir that we create (and remove on down) if it is missing."""
    if not path.exists():
        journal.record({"kind": "path", "path": str(path)})
        path.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------------------------------
# Undo
# ---------------------------------------------------------------------------------------------


def unmount_under(root: Path) -> list[str]:
    points = mounts_under(Path("/proc/self/mountinfo").read_text().splitlines(), root)
    for point in points:
        run(["umount", "--lazy", point], check=False)
    return points


def remove_cgroup(name: str, root: Path = Path("/sys/fs/cgroup")) -> None:
    """rmdir ``name`` in every hierarchy, children first (cgroupfs refuses rmtree)."""
    for hierarchy in root.iterdir() if root.is_dir() else []:
        top = hierarchy / name
        if not top.is_dir() or top.is_symlink():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for path in [*dirs, top]:
            with contextlib.suppress(OSError):  # still busy: left for the next down
                path.rmdir()


def _undo_link(entry: Entry) -> None:
    if link_exists(entry["name"]):
        run(["ip", "link", "del", entry["name"]])


def _undo_sysctl(entry: Entry) -> None:
    if read_sysctl(entry["key"]) not in (None, entry["old"]):
        write_sysctl(entry["key"], entry["old"])


def _undo_iptables(entry: Entry) -> None:
    save, binary = IPTABLES[entry["family"]]
    if shutil.which(save):
        for args in iptables_undo_commands(entry["save"], run([save])):
            run([binary, "-w", *args], check=False)


def _undo_ipsets(entry: Entry) -> None:
    if shutil.which("ipset"):
        before = set(entry["names"])
        for name in run(["ipset", "list", "-n"]).split():
            if name not in before:
                run(["ipset", "destroy", name], check=False)


def _undo_path(entry: Entry) -> None:
    path = Path(entry["path"])
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _unmount_entry(entry: Entry) -> None:
    unmount_under(Path(entry["under"]))


UNDO: dict[str, Callable[[Entry], None]] = {
    "link": _undo_link,
    "sysctl": _undo_sysctl,
    "iptables": _undo_iptables,
    "ipsets": _undo_ipsets,
    "mounts": _unmount_entry,
    "cgroup": lambda entry: remove_cgroup(entry["name"]),
    "path": _undo_path,
}


def undo_entry(entry: Entry) -> None:
    UNDO[entry["kind"]](entry)


def undo_all(journal: Journal) -> list[str]:
    """Undoes every entry (reverse order); returns the problems, keeping going past each one so
    one failure does not leave the rest of the host changed."""
    problems = []
    for entry in undo_order(journal.entries):
        try:
            undo_entry(entry)
        except (HostError, OSError) as exc:
            what = entry.get("name") or entry.get("key") or entry.get("path") or ""
            problems.append(f"{entry['kind']} {what}: {exc}")
    if not problems:
        journal.clear()
    return problems
