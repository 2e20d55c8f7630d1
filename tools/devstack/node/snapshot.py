"""A comparable picture of the host state the node touches: links, iptables chains, ipsets,
tracked sysctls and mounts. `make down` must bring it back to what it was before `make up`.

Mounts of other engines on this machine (the image builder's dockerd under
~/.cache/qframe-images, which builds while the node runs) are left out: they are not the node's.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tools.devstack.node.hostnet import snapshot_sysctls
from tools.devstack.node.journal import chain_names

# The kernel creates a table's built-in chains when the table is first used and never lets anyone
# delete them: on a fresh machine `iptables-save` lists no table before the node runs and every
# table's built-ins after it, though nothing of ours is left. Only chains someone can remove count.
BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})

FOREIGN_MOUNT_PREFIXES = (str(Path.home() / ".cache" / "qframe-images"), "/run/qframe-images", "/run/docker")


def _out(args: list[str]) -> str:
    if not shutil.which(args[0]):
        return ""
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=60).stdout


@dataclass(frozen=True)
class HostSnapshot:
    links: frozenset[str]
    chains: frozenset[str]
    ipsets: frozenset[str]
    sysctls: tuple[tuple[str, str | None], ...]
    mounts: frozenset[str]

    def differences(self, other: HostSnapshot) -> list[str]:
        """Human-readable differences ``other`` has against ``self`` (empty: the same)."""
        out = []
        for name in ("links", "chains", "ipsets", "mounts"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs - mine:
                out.append(f"{name} added: {sorted(theirs - mine)}")
            if mine - theirs:
                out.append(f"{name} removed: {sorted(mine - theirs)}")
        for (key, before), (_, after) in zip(self.sysctls, other.sysctls, strict=True):
            if before != after:
                out.append(f"sysctl {key}: {before} -> {after}")
        return out


def link_names(ip_o_link: str) -> frozenset[str]:
    """Interface names from `ip -o link` (``5: qfnode0: <...>``; veths show ``name@peer``)."""
    names = set()
    for line in ip_o_link.splitlines():
        parts = line.split(": ", 2)
        if len(parts) >= 2:
            names.add(parts[1].split("@")[0])
    return frozenset(names)


def removable_chains(names: set[str]) -> frozenset[str]:
    """``table:chain`` names without the kernel's built-in chains (see BUILTIN_CHAINS)."""
    return frozenset(name for name in names if name.rsplit(":", 1)[-1] not in BUILTIN_CHAINS)


def take() -> HostSnapshot:
    mounts = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if not point.startswith(FOREIGN_MOUNT_PREFIXES):
            mounts.add(point)
    chains = chain_names(_out(["iptables-save"])) | {f"v6:{c}" for c in chain_names(_out(["ip6tables-save"]))}
    return HostSnapshot(
        links=link_names(_out(["ip", "-o", "link"])),
        chains=removable_chains(chains),
        ipsets=frozenset(_out(["ipset", "list", "-n"]).split()),
        sysctls=tuple(sorted(snapshot_sysctls().items())),
        mounts=frozenset(mounts),
    )
