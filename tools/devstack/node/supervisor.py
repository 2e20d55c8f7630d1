"""Detached daemons with pid and log files in the state dir: start, wait ready, stop.

A daemon is started in its own session (setsid), so Ctrl-C of `make up` does not kill it and a
killed `make up` leaves it running for the next `up`/`down` to find through its pid file. The pid
file holds the pid and the binary path; a pid whose /proc cmdline does not start with that binary
belongs to someone else (pid reuse) and is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.devstack.node.configs import DaemonSpec


class DaemonError(RuntimeError):
    """A daemon died or did not become ready; the message names its log."""


@dataclass(frozen=True)
class Supervisor:
    pids: Path
    logs: Path
    ca_file: Path
    client_cert: tuple[Path, Path]

    def pid_file(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pid(self, name: str) -> int | None:
        """The live pid of daemon ``name``, or None."""
        path = self.pid_file(name)
        if not path.is_file():
            return None
        try:
            pid_text, _, binary = path.read_text().partition("\n")
            pid = int(pid_text)
        except ValueError:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        if cmdline != binary.strip() or stat.rsplit(")", 1)[1].split()[0] == "Z":
            return None
        return pid

    def start(self, spec: DaemonSpec, env: dict[str, str] | None = None) -> int:
        """Starts ``spec`` unless it already runs; returns its pid."""
        existing = self.pid(spec.name)
        if existing is not None:
            return existing
        self.pids.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.log_file(spec.name).open("ab")
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(spec.argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
        log.close()
        self.pid_file(spec.name).write_text(f"{proc.pid}\n{spec.argv[0]}\n")
        # Until exec, /proc/<pid>/cmdline is still ours (python): wait for it, so pid() finds it.
        deadline = time.monotonic() + 5
        while self.pid(spec.name) is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return proc.pid

    def probe(self, target: str) -> bool:
        if target == "alive":
            return True
        if target.startswith("socket:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(1)
                sock.connect(target.removeprefix("socket:"))
                return True
            except OSError:
                return False
            finally:
                sock.close()
        context: ssl.SSLContext | None = None
        if target.startswith("https://"):
            context = ssl.create_default_context(cafile=str(self.ca_file))
            context.load_cert_chain(str(self.client_cert[0]), str(self.client_cert[1]))
            if "127.0.0.1" in target:
                # controller-manager and scheduler serve a self-signed cert of their own.
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(target, timeout=2, context=context) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, spec: DaemonSpec) -> float:
        """Seconds until ``spec.ready`` answered; DaemonError if the daemon died or timed out."""
        start = time.monotonic()
        while True:
            if spec.ready == "alive":
                time.sleep(0.5)  # a process that has no endpoint: ready if it did not die at once
            if self.probe(spec.ready) and self.pid(spec.name) is not None:
                return time.monotonic() - start
            if self.pid(spec.name) is None:
                raise DaemonError(
                    f"{spec.name} exited during startup; read {self.log_file(spec.name)}:\n{self.tail(spec.name)}"
                )
            if time.monotonic() - start > spec.timeout_s:
                raise DaemonError(
                    f"{spec.name} did not answer {spec.ready} within {spec.timeout_s:.0f}s; "
                    f"read {self.log_file(spec.name)}:\n{self.tail(spec.name)}"
                )
            time.sleep(0.2)

    def tail(self, name: str, lines: int = 15) -> str:
        path = self.log_file(name)
        if not path.is_file():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, name: str, grace_s: float = 10.0) -> bool:
        """SIGTERM to the daemon's process group, SIGKILL after ``grace_s``; True if it ran."""
        pid = self.pid(name)
        self.pid_file(name).unlink(missing_ok=True) if pid is None else None
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pid_file(name).unlink(missing_ok=True)
        return True

    def stop_all(self, names: Sequence[str], grace_s: float = 10.0) -> list[str]:
        return [n for n in names if self.stop(n, grace_s)]

    def rss_kib(self, name: str) -> int | None:
        pid = self.pid(name)
        if pid is None:
            return None
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        # Our own child that exited: reap it.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)
