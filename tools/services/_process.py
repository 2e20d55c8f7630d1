"""One service process: its temp dir, its environment, its log, readiness polling and a clean stop.

A service runs in its own session, so stopping it stops its whole process group (a JVM's or a
uvicorn server's children included), and its temp dir goes with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tools.services.errors import Fix, ServiceStartError

POLL_INTERVAL_S = 0.25
STOP_TIMEOUT_S = 30.0


@contextmanager
def service_workdir(service: str, parent: Path | None) -> Iterator[Path]:
    """A fresh temp dir named after the service, removed on exit whatever happened."""
    path = Path(tempfile.mkdtemp(prefix=f"qframe-{service.lower()}-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class RunAs:
    """The account a service process runs as (PostgreSQL refuses to run as root)."""

    name: str
    uid: int
    gid: int


def _popen_identity(run_as: RunAs | None) -> dict[str, Any]:
    if run_as is None:
        return {}
    return {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}


def child_env(extra: Mapping[str, str] | None = None, drop: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment without ``drop`` (settings that would redirect the service), plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if key not in drop}
    env.update(extra or {})
    return env


def run_once(
    service: str,
    command: Sequence[str],
    log_path: Path,
    *,
    fix: Fix,
    timeout_s: float,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    run_as: RunAs | None = None,
) -> None:
    """Runs a set-up command (initdb, storage format) to completion, raising ServiceStartError on failure."""
    with log_path.open("ab") as log:
        try:
            result = subprocess.run(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                timeout=timeout_s,
                check=False,
                **_popen_identity(run_as),
            )
        except subprocess.TimeoutExpired:
            raise ServiceStartError.from_log(
                service,
                f"set-up command did not finish within {timeout_s:.0f} s",
                fix=fix,
                command=command,
                log_path=log_path,
            ) from None
        except OSError as exc:
            raise ServiceStartError(service, f"could not execute: {exc}", fix=fix, command=command) from exc
    if result.returncode != 0:
        raise ServiceStartError.from_log(
            service,
            "set-up command failed",
            fix=fix,
            command=command,
            returncode=result.returncode,
            log_path=log_path,
        )


class ServiceProcess:
    """One long-running service process in its own session (so its whole group can be stopped)."""

    def __init__(
        self,
        service: str,
        command: Sequence[str],
        log_path: Path,
        *,
        fix: Fix,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        run_as: RunAs | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.service = service
        self.command = list(command)
        self.log_path = log_path
        self.fix = fix
        self._stop_signal = stop_signal
        self._log: IO[bytes] = log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                start_new_session=True,
                **_popen_identity(run_as),
            )
        except OSError as exc:
            self._log.close()
            raise ServiceStartError(service, f"could not execute: {exc}", fix=fix, command=command) from exc

    @property
    def pid(self) -> int:
        return self._proc.pid

    def error(self, reason: str, *, returncode: int | None = None) -> ServiceStartError:
        return ServiceStartError.from_log(
            self.service, reason, fix=self.fix, command=self.command, returncode=returncode, log_path=self.log_path
        )

    def wait_ready(self, check: Callable[[], bool], *, timeout_s: float, what: str) -> None:
        """Polls ``check`` until it returns True; raises if the process exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        last_problem = "no answer yet"
        while True:
            returncode = self._proc.poll()
            if returncode is not None:
                raise self.error(f"process exited during start-up (waiting for {what})", returncode=returncode)
            try:
                if check():
                    return
            except Exception as exc:  # readiness probes fail in many ways while a server boots
                last_problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise self.error(
                    f"not ready after {timeout_s:g} s (timeout waiting for {what}; last probe: {last_problem})"
                )
            time.sleep(POLL_INTERVAL_S)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Asks the process to stop, then kills what is left of its process group and its descendants.

        Descendants are listed first: some servers start helpers in sessions of their own (JupyterHub's
        managed services), which the group kill does not reach and which outlive their parent.
        """
        pgid = self._proc.pid  # start_new_session: the process leads its own group
        children = descendants(self._proc.pid)
        try:
            if self._proc.poll() is None:
                with suppress(subprocess.TimeoutExpired, ProcessLookupError):
                    os.kill(self._proc.pid, self._stop_signal)
                    self._proc.wait(timeout=timeout_s)
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)  # children that outlived the leader, or a hung leader
            for child in children:
                with suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            self._proc.wait(timeout=timeout_s)
        finally:
            self._log.close()


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children first, then theirs), read from /proc."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found += [int(entry.name), *descendants(int(entry.name))]
            except (FileNotFoundError, IndexError, ValueError):
                continue
    return found


@contextmanager
def stopped_on_exit(process: ServiceProcess) -> Iterator[ServiceProcess]:
    """The process, stopped when the block ends (normally, on a failed start or on an error)."""
    try:
        yield process
    finally:
        process.stop()
