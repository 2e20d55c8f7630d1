"""Our own Docker engine: a private containerd + dockerd pair that never touches host networking.

Why a private containerd: dockerd otherwise attaches to /run/containerd/containerd.sock when it
exists, which is the real node's containerd; images and builds must not depend on (or disturb)
the node. Everything lives under /run/qframe-images (sockets, pids) and
~/.cache/qframe-images (data). `docker_engine()` reuses a running engine and stops only one it
started itself, and only when no other user holds the shared usage lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# QFRAME_IMAGES_RUN (with QFRAME_IMAGES_CACHE) gives a second, fully separate engine, e.g. to
# measure a cold build next to a warm one.
RUN_DIR = Path(os.environ.get("QFRAME_IMAGES_RUN", "/run/qframe-images"))
DOCKER_SOCK = RUN_DIR / "docker.sock"
CONTAINERD_SOCK = RUN_DIR / "containerd.sock"


def images_cache() -> Path:
    return Path(os.environ.get("QFRAME_IMAGES_CACHE", Path.home() / ".cache" / "qframe-images"))


class EngineError(RuntimeError):
    """The engine is missing or failed to start; the message says what to install or read."""


@dataclass(frozen=True)
class Engine:
    """How to reach the engine: the docker CLI and the environment it needs."""

    docker: str
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, capture: bool = True, timeout: float | None = None) -> str:
        done = subprocess.run(
            [self.docker, *args], env=self.env, capture_output=capture, text=True, check=False, timeout=timeout
        )
        if check and done.returncode != 0:
            raise EngineError(
                f"docker {' '.join(args[:3])} failed ({done.returncode}): {(done.stderr or '').strip()[-2000:]}"
            )
        return (done.stdout or "").strip()


def containerd_config(cache: Path) -> str:
    """A containerd config for builds only (no CRI plugin: the node's containerd owns that)."""
    return f"""version = 2
root = "{cache / "containerd"}"
state = "{RUN_DIR / "containerd-state"}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{CONTAINERD_SOCK}"
[ttrpc]
  address = "{CONTAINERD_SOCK}.ttrpc"
"""


def dockerd_args(cache: Path) -> list[str]:
    # --bridge=none/--iptables=false: no docker0, no NAT rules; builds run with --network=none.
    # --oom-score-adjust=0: this VM's root lacks CAP_SYS_RESOURCE, so lowering it would fail.
    return [
        "dockerd",
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
        "--ip-forward=false",
        "--oom-score-adjust=0",
        f"--data-root={cache / 'docker'}",
        f"--exec-root={RUN_DIR / 'exec'}",
        f"--pidfile={RUN_DIR / 'docker.pid'}",
        f"--containerd={CONTAINERD_SOCK}",
        f"--host=unix://{DOCKER_SOCK}",
    ]


def _client() -> str:
    # Debian's CLI matches Debian's engine; any other docker on PATH may default to buildx.
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise EngineError("no docker CLI found\n  fix: apt-get install -y docker.io debootstrap (or tools/install)")


def _client_env(cache: Path) -> dict[str, str]:
    # DOCKER_CONFIG points at an empty dir so no user credentials or plugins are ever read.
    config = cache / "docker-config"
    config.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "DOCKER_HOST": f"unix://{DOCKER_SOCK}",
        "DOCKER_CONFIG": str(config),
        "DOCKER_BUILDKIT": "0",
        "DOCKER_CLI_HINTS": "false",
    }


def _pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _wait(what: str, ready: Path, deadline: float, log: Path, check: subprocess.Popen[bytes]) -> None:
    while time.monotonic() < deadline:
        if ready.exists():
            return
        if check.poll() is not None:
            break
        time.sleep(0.2)
    raise EngineError(f"{what} did not start (log: {log}):\n{log.read_text(errors='replace')[-1500:]}")


def _start(cache: Path) -> list[int]:
    for tool in ("dockerd", "containerd", "runc"):
        if shutil.which(tool) is None:
            raise EngineError(f"'{tool}' is not installed\n  fix: apt-get install -y docker.io debootstrap")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    logs = cache / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started: list[int] = []
    if _pid_alive(RUN_DIR / "containerd.pid") is None:
        CONTAINERD_SOCK.unlink(missing_ok=True)
        cfg = RUN_DIR / "containerd.toml"
        cfg.write_text(containerd_config(cache))
        log = logs / "containerd.log"
        proc = subprocess.Popen(
            ["containerd", "--config", str(cfg)], stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )
        (RUN_DIR / "containerd.pid").write_text(str(proc.pid))
        started.append(proc.pid)
        _wait("containerd", CONTAINERD_SOCK, time.monotonic() + 30, log, proc)
    DOCKER_SOCK.unlink(missing_ok=True)
    log = logs / "dockerd.log"
    proc = subprocess.Popen(dockerd_args(cache), stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    started.insert(0, proc.pid)
    _wait("dockerd", DOCKER_SOCK, time.monotonic() + 60, log, proc)
    return started


def _stop(pids: list[int]) -> None:
    for pid in pids:  # dockerd first, then containerd
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                    break
            except (ProcessLookupError, FileNotFoundError):
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


@contextlib.contextmanager
def docker_engine(keep: bool = False) -> Iterator[Engine]:
    """Yields a running engine; stops it at exit only if this call started it and nobody else uses it."""
    cache = images_cache()
    cache.mkdir(parents=True, exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    usage = (RUN_DIR / "usage.lock").open("a+")
    fcntl.flock(usage, fcntl.LOCK_SH)
    with (RUN_DIR / "start.lock").open("a+") as start_lock:
        fcntl.flock(start_lock, fcntl.LOCK_EX)
        engine = Engine(docker=_client(), env=_client_env(cache))
        started: list[int] = []
        if _pid_alive(RUN_DIR / "docker.pid") is None or engine.run("version", check=False, timeout=20) == "":
            started = _start(cache)
        engine.run("info", "--format", "{{.ServerVersion}}", timeout=60)
    try:
        yield engine
    finally:
        fcntl.flock(usage, fcntl.LOCK_UN)
        if started and not keep:
            try:
                fcntl.flock(usage, fcntl.LOCK_EX | fcntl.LOCK_NB)
                _stop(started)
            except BlockingIOError:
                pass  # another process is using the engine: leave it; the next user reuses it
        usage.close()


def stop_engine() -> bool:
    """Stops a kept engine (dockerd, then containerd). True when something was running."""
    pids = [p for p in (_pid_alive(RUN_DIR / "docker.pid"), _pid_alive(RUN_DIR / "containerd.pid")) if p]
    _stop(pids)
    return bool(pids)
