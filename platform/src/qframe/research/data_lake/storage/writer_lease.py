"""Who writes an attempt directory, so a clean-up can tell a dead writer's leftovers from a live write.

Every write puts ``_writer.json`` (host, pid, the process's start time) into its attempt directory before
any data file. A clean-up removes an unreferenced attempt only when its writer is provably gone: same host,
and that pid is not running or is a different process (pid reuse shows as another start time). Writers
on other hosts are never judged from here: their leftovers wait for a repair tool, never for a guess.
"""

from __future__ import annotations

import json
import os
import socket
from enum import Enum
from pathlib import Path
from typing import Final

LEASE_NAME: Final = "_writer.json"


class WriterState(Enum):
    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``), None if no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and ')': fields after its last ')' are fixed.
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19])  # field 22 overall: starttime


def lease_bytes() -> bytes:
    """The lease of the calling process."""
    pid = os.getpid()
    return json.dumps({"host": socket.gethostname(), "pid": pid, "start_ticks": process_start_ticks(pid)}).encode()


def writer_state(lease: bytes, *, host: str | None = None) -> WriterState:
    """Whether the writer that left ``lease`` still runs, judged from this host only."""
    try:
        record = json.loads(lease)
        lease_host, pid, ticks = str(record["host"]), int(record["pid"]), record["start_ticks"]
    except (ValueError, KeyError, TypeError):
        return WriterState.UNKNOWN
    if lease_host != (host or socket.gethostname()) or ticks is None or not Path("/proc/self/stat").exists():
        return WriterState.UNKNOWN
    return WriterState.ALIVE if process_start_ticks(pid) == int(ticks) else WriterState.DEAD
