"""A journal of every change the node makes to the host, and the exact undo of each.

Each change is appended (and the file fsynced) *before* it is made, so a `make up` killed at any
point leaves a journal that covers everything it may have done; `down` (or the next `up`) replays
the undo in reverse order and then deletes the journal. Undo steps are idempotent: undoing a change
that never happened (the process died between the record and the change) is a no-op.

Entries are plain JSON dicts with a ``kind``:

- ``link``: a network interface we created (undo: delete it if present)
- ``sysctl``: a kernel setting and its value before us (undo: write the old value back)
- ``iptables``: the full ``iptables-save`` / ``ip6tables-save`` output before the node ran (undo:
  delete every rule and chain that is not in it, which covers what kubelet, kube-proxy, kube-router
  and the CNI plugins added)
- ``ipsets``: the ipset names before the node ran (undo: destroy the others; after iptables, which
  references them)
- ``mounts``: a directory whose mounts are ours (undo: unmount everything under it, deepest first)
- ``path``: a file or directory we created (undo: remove it)
- ``cgroup``: a cgroup name kubelet creates in every v1 hierarchy (undo: rmdir it bottom-up
  once the node's processes are gone)
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Entry = dict[str, Any]
KINDS = ("link", "sysctl", "iptables", "ipsets", "mounts", "path", "cgroup")
BUILTIN_CHAINS = {"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"}


class JournalError(RuntimeError):
    """The journal file is unreadable or holds an entry we do not know how to undo."""


@dataclass
class Journal:
    path: Path
    entries: list[Entry] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Journal:
        if not path.is_file():
            return cls(path)
        try:
            entries = json.loads(path.read_text() or "[]")
        except ValueError as exc:
            raise JournalError(
                f"{path} is not valid JSON ({exc}); it lists the host changes of the last `make up`. "
                "Inspect it, undo by hand what it lists, then delete it."
            ) from None
        for entry in entries:
            validate_entry(entry)
        return cls(path, list(entries))

    def record(self, entry: Entry) -> bool:
        """Appends ``entry`` unless an identical one exists; True if it was new."""
        validate_entry(entry)
        if any(_same_change(e, entry) for e in self.entries):
            return False
        self.entries.append(entry)
        self._save()
        return True

    def has(self, kind: str, key: str) -> bool:
        return any(e["kind"] == kind and _identity(e) == key for e in self.entries)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as handle:
            json.dump(self.entries, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)

    def clear(self) -> None:
        self.entries = []
        self.path.unlink(missing_ok=True)


def validate_entry(entry: Mapping[str, Any]) -> None:
    kind = entry.get("kind")
    required = {
        "link": ("name",),
        "sysctl": ("key", "old"),
        "iptables": ("family", "save"),
        "ipsets": ("names",),
        "mounts": ("under",),
        "path": ("path",),
        "cgroup": ("name",),
    }
    if kind not in required:
        raise JournalError(f"journal entry {dict(entry)!r} has unknown kind {kind!r}; known: {', '.join(KINDS)}")
    missing = [k for k in required[str(kind)] if k not in entry]
    if missing:
        raise JournalError(f"journal entry {dict(entry)!r} lacks {', '.join(missing)}")


def _identity(entry: Mapping[str, Any]) -> str:
    kind = entry["kind"]
    return str(
        {
            "link": entry.get("name"),
            "sysctl": entry.get("key"),
            "iptables": entry.get("family"),
            "ipsets": "ipsets",
            "mounts": entry.get("under"),
            "path": entry.get("path"),
            "cgroup": entry.get("name"),
        }[kind]
    )


def _same_change(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    # The first record of a key wins: a second `up` must not overwrite the original old value.
    return bool(a["kind"] == b["kind"] and _identity(a) == _identity(b))


def undo_order(entries: Sequence[Entry]) -> list[Entry]:
    """Reverse order of recording, except that ipsets go after every iptables entry (rules
    reference sets, and a referenced set cannot be destroyed)."""
    reverse = list(reversed(entries))
    others = [e for e in reverse if e["kind"] != "ipsets"]
    sets = [e for e in reverse if e["kind"] == "ipsets"]
    last_iptables = max((i for i, e in enumerate(others) if e["kind"] == "iptables"), default=-1)
    return others[: last_iptables + 1] + sets + others[last_iptables + 1 :]


# ---------------------------------------------------------------------------------------------
# iptables: what to delete so a table is back to its saved state
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    chains: tuple[str, ...]
    rules: tuple[tuple[str, str], ...]  # (chain, rule spec after "-A <chain> ")


def parse_iptables_save(text: str) -> dict[str, Table]:
    tables: dict[str, Table] = {}
    name = ""
    chains: list[str] = []
    rules: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            name, chains, rules = line[1:], [], []
        elif line.startswith(":") and name:
            chains.append(line[1:].split()[0])
        elif line.startswith("-A ") and name:
            chain, _, spec = line[3:].partition(" ")
            rules.append((chain, spec))
        elif line == "COMMIT" and name:
            tables[name] = Table(tuple(chains), tuple(rules))
            name = ""
    return tables


def iptables_undo_commands(before: str, now: str) -> list[list[str]]:
    """Arguments for iptables (after the binary) that bring ``now`` back to ``before``:
    first delete added rules in chains that existed before, then flush every added chain, then
    delete the added chains (a chain can only go once nothing jumps to it)."""
    old, new = parse_iptables_save(before), parse_iptables_save(now)
    deletes: list[list[str]] = []
    flushes: list[list[str]] = []
    removals: list[list[str]] = []
    for table, current in new.items():
        previous = old.get(table, Table((), ()))
        kept_chains = set(previous.chains) | BUILTIN_CHAINS
        previous_rules = set(previous.rules)
        for chain, spec in current.rules:
            if chain in kept_chains and (chain, spec) not in previous_rules:
                deletes.append(["-t", table, "-D", chain, *shlex.split(spec)])
        for chain in current.chains:
            if chain not in kept_chains:
                flushes.append(["-t", table, "-F", chain])
                removals.append(["-t", table, "-X", chain])
    return deletes + flushes + removals


def chain_names(save_text: str) -> set[str]:
    return {f"{table}:{chain}" for table, t in parse_iptables_save(save_text).items() for chain in t.chains}


def mounts_under(mountinfo_lines: Iterable[str], root: Path) -> list[str]:
    """Mount points at or under ``root`` from /proc/self/mountinfo lines, deepest first."""
    prefix = str(root).rstrip("/")
    points = []
    for line in mountinfo_lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))
