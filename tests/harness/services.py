"""Real PostgreSQL, Kafka, S3 API and MLflow processes on 127.0.0.1 for the services test tier.

Each ``*_server()`` context manager starts one real process in its own temp dir on a free loopback
port, waits until the service really answers (a login and query, a metadata request, an S3 call,
``GET /health``), yields a frozen dataclass of connection details and, on exit or on any error,
stops the whole process group and removes the temp dir.

A service that cannot start raises :class:`ServiceStartError`, whose message names the service, the
command, the exit code or the timeout, the tail of the process log and what to do about it. Nothing
here skips a test.

Tools come from the repo's ``.tools`` dir (``tools/install postgres kafka`` creates it); every
context manager takes an override so tests can point it somewhere else. Importing this module
starts nothing.
"""

from __future__ import annotations

import base64
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO_ROOT / ".tools"
POSTGRES_BIN_DIR = TOOLS_DIR / "bin"
KAFKA_LIB_DIR = TOOLS_DIR / "kafka-lib"

LOOPBACK = "127.0.0.1"
LOG_TAIL_LINES = 40
POLL_INTERVAL_S = 0.25

# Generous: a loaded 2-core machine needs 20-40 s for a cold JVM broker or the MLflow server.
POSTGRES_TIMEOUT_S = 60.0
KAFKA_TIMEOUT_S = 120.0
S3_TIMEOUT_S = 60.0
MLFLOW_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0

# Small heap, quick start; no hsperfdata files in /tmp.
KAFKA_HEAP_OPTS = ("-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData")
_SLF4J_NOP_MARKER = "no-operation (NOP) logger"

# Lines worth quoting from a long log: Java/Python exceptions, log4j/slf4j/uvicorn and PostgreSQL levels.
_ERROR_LINE = re.compile(r"\b(ERROR|FATAL|PANIC)\b|Exception\b|Error:|Traceback \(most recent")

# What to do about a failure: a fixed sentence, or one chosen after reading the log tail.
Fix = str | Callable[[str], str]


class ServiceStartError(RuntimeError):
    """A test service did not start; the message says which, how it was started, why and what to do."""

    def __init__(
        self,
        service: str,
        reason: str,
        *,
        fix: Fix,
        command: Sequence[str] | None = None,
        returncode: int | None = None,
        log_path: Path | None = None,
        log_tail: str = "",
        log_errors: Sequence[str] = (),
    ) -> None:
        self.service = service
        self.reason = reason
        self.fix = fix if isinstance(fix, str) else fix(log_tail)
        self.command = list(command) if command is not None else None
        self.returncode = returncode
        self.log_tail = log_tail
        self.log_errors = list(log_errors)
        lines = [f"{service} failed to start: {reason}"]
        if self.command is not None:
            lines.append(f"  command: {shlex.join(self.command)}")
        if returncode is not None:
            lines.append(f"  exit code: {returncode}")
        if self.log_errors:
            lines.append("  first error lines in the log:")
            lines.extend(f"    ! {line}" for line in self.log_errors)
        if log_path is not None:
            shown = log_tail.rstrip() or "(empty)"
            lines.append(f"  last {LOG_TAIL_LINES} lines of its log ({log_path}, removed with its temp dir):")
            lines.extend(f"    | {line}" for line in shown.splitlines())
        lines.append(f"  fix: {self.fix}")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class PostgresService:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str
    url: str = field(repr=False)  # SQLAlchemy URL for psycopg 3: postgresql+psycopg://...
    dsn: str = field(repr=False)  # libpq key=value DSN for psycopg.connect / psql
    data_dir: Path
    pid: int
    started_in_s: float


@dataclass(frozen=True)
class KafkaService:
    host: str
    port: int
    controller_port: int
    bootstrap_servers: str
    cluster_id: str
    pid: int
    started_in_s: float


@dataclass(frozen=True)
class S3Service:
    host: str
    port: int
    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    pid: int
    started_in_s: float

    def boto3_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client("s3", **kwargs)``."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }

    def s3fs_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem(**kwargs)`` (also fsspec ``storage_options``)."""
        return {
            "key": self.access_key_id,
            "secret": self.secret_access_key,
            "endpoint_url": self.endpoint_url,
            "client_kwargs": {"region_name": self.region},
        }


@dataclass(frozen=True)
class MinioService:
    """A real MinIO server; the root user is the only account (tests create buckets themselves)."""

    host: str
    port: int
    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    data_dir: Path
    pid: int
    started_in_s: float

    def boto3_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client("s3", **kwargs)``."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }


@dataclass(frozen=True)
class MlflowService:
    host: str
    port: int
    tracking_uri: str
    backend_store_uri: str
    artifacts_dir: Path
    pid: int
    started_in_s: float


# --- plumbing shared by all services -------------------------------------------------------------


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0):
            return True
    except OSError:
        return False


def _error_lines(path: Path, limit: int = 8, width: int = 400) -> list[str]:
    """The first lines that look like errors: a long log's tail is often only shutdown noise."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found = [line[:width] for line in text.splitlines() if _ERROR_LINE.search(line)]
    return found[:limit]


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:])


@contextmanager
def _workdir(service: str, parent: Path | None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"qframe-{service.lower()}-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class _RunAs:
    """The account a service process runs as (PostgreSQL refuses to run as root)."""

    name: str
    uid: int
    gid: int


def _popen_identity(run_as: _RunAs | None) -> dict[str, Any]:
    if run_as is None:
        return {}
    return {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}


def _run_once(
    service: str,
    command: Sequence[str],
    log_path: Path,
    *,
    fix: Fix,
    timeout_s: float,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    run_as: _RunAs | None = None,
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
            raise ServiceStartError(
                service,
                f"set-up command did not finish within {timeout_s:.0f} s",
                fix=fix,
                command=command,
                log_path=log_path,
                log_tail=_tail(log_path),
                log_errors=_error_lines(log_path),
            ) from None
        except OSError as exc:
            raise ServiceStartError(service, f"could not execute: {exc}", fix=fix, command=command) from exc
    if result.returncode != 0:
        raise ServiceStartError(
            service,
            "set-up command failed",
            fix=fix,
            command=command,
            returncode=result.returncode,
            log_path=log_path,
            log_tail=_tail(log_path),
            log_errors=_error_lines(log_path),
        )


class _Process:
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
        run_as: _RunAs | None = None,
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
        return ServiceStartError(
            self.service,
            reason,
            fix=self.fix,
            command=self.command,
            returncode=returncode,
            log_path=self.log_path,
            log_tail=_tail(self.log_path),
            log_errors=_error_lines(self.log_path),
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
        """Asks the process to stop, then kills what is left of its process group."""
        pgid = self._proc.pid  # start_new_session: the process leads its own group
        try:
            if self._proc.poll() is None:
                with suppress(subprocess.TimeoutExpired, ProcessLookupError):
                    os.kill(self._proc.pid, self._stop_signal)
                    self._proc.wait(timeout=timeout_s)
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)  # children that outlived the leader, or a hung leader
            self._proc.wait(timeout=timeout_s)
        finally:
            self._log.close()


@contextmanager
def _managed(process: _Process) -> Iterator[_Process]:
    try:
        yield process
    finally:
        process.stop()


def _child_env(extra: Mapping[str, str] | None = None, drop: Sequence[str] = ()) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in drop}
    env.update(extra or {})
    return env


# --- PostgreSQL ----------------------------------------------------------------------------------

_POSTGRES_TOOLS = ("initdb", "postgres")


def _postgres_account(service: str, fix: str) -> _RunAs | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceStartError(
            service,
            "running as root, and initdb/postgres refuse root, but there is no 'postgres' system account",
            fix=fix,
        ) from None
    return _RunAs(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


@contextmanager
def postgres_server(
    *,
    bin_dir: Path | None = None,
    user: str = "qframe",
    dbname: str = "qframe",
    startup_timeout_s: float = POSTGRES_TIMEOUT_S,
    workdir_parent: Path | None = None,
) -> Iterator[PostgresService]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 with a password-protected superuser (scram).

    ``dbname`` is created (owned by ``user``) once the server answers. Run as root, initdb and postgres
    run as the 'postgres' account, so ``workdir_parent`` must be a dir that account can enter.
    """
    service = "PostgreSQL"
    bin_dir = bin_dir if bin_dir is not None else POSTGRES_BIN_DIR
    fix = f"run tools/install postgres (links initdb, postgres, ... into {POSTGRES_BIN_DIR})"
    missing = [tool for tool in _POSTGRES_TOOLS if not os.access(bin_dir / tool, os.X_OK)]
    if missing:
        raise ServiceStartError(
            service,
            f"{', '.join(missing)} not found (or not executable) in {bin_dir}",
            fix=fix,
            command=[str(bin_dir / missing[0])],
        )
    run_as = _postgres_account(service, fix)

    import psycopg  # noqa: PLC0415 - only the services tier needs the driver
    from psycopg import sql  # noqa: PLC0415
    from psycopg.conninfo import make_conninfo  # noqa: PLC0415

    started = time.monotonic()
    password = secrets.token_urlsafe(24)
    with _workdir(service, workdir_parent) as workdir:
        data_dir = workdir / "data"
        socket_dir = workdir / "socket"
        socket_dir.mkdir()
        pwfile = workdir / "pwfile"
        pwfile.write_text(password + "\n", encoding="utf-8")
        pwfile.chmod(0o600)
        if run_as is not None:
            for path in (workdir, socket_dir, pwfile):
                os.chown(path, run_as.uid, run_as.gid)
        # The account running postgres needs a HOME it can read; LC_ALL keeps messages in English.
        env = _child_env({"LC_ALL": "C", "HOME": str(workdir)}, drop=("PGDATA", "PGHOST", "PGPORT"))
        log_path = workdir / "postgres.log"
        _run_once(
            service,
            [
                str(bin_dir / "initdb"),
                "--pgdata",
                str(data_dir),
                "--username",
                user,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            log_path,
            fix=fix,
            timeout_s=startup_timeout_s,
            cwd=workdir,
            env=env,
            run_as=run_as,
        )
        pwfile.unlink()

        port = free_port()
        command = [
            str(bin_dir / "postgres"),
            "-D",
            str(data_dir),
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-c",
            f"port={port}",
            "-c",
            f"unix_socket_directories={socket_dir}",
            "-c",
            "password_encryption=scram-sha-256",
            # A disposable test cluster: durability buys nothing and costs seconds on a slow disk.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
        process = _Process(
            service,
            command,
            log_path,
            fix=f"read the log above; {fix} if binaries are missing",
            cwd=workdir,
            env=env,
            run_as=run_as,
            stop_signal=signal.SIGINT,  # "fast" shutdown: roll back sessions, exit promptly
        )
        with _managed(process):
            admin_dsn = make_conninfo(
                host=LOOPBACK, port=port, user=user, password=password, dbname="postgres", connect_timeout=3
            )

            def answers() -> bool:
                with psycopg.connect(admin_dsn) as conn:
                    return conn.execute("SELECT 1").fetchone() == (1,)

            process.wait_ready(answers, timeout_s=startup_timeout_s, what="login + SELECT 1 over TCP")
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                if dbname != "postgres":
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            yield PostgresService(
                host=LOOPBACK,
                port=port,
                user=user,
                password=password,
                dbname=dbname,
                url=f"postgresql+psycopg://{quote(user, safe='')}:{quote(password, safe='')}"
                f"@{LOOPBACK}:{port}/{quote(dbname, safe='')}",
                dsn=make_conninfo(host=LOOPBACK, port=port, user=user, password=password, dbname=dbname),
                data_dir=data_dir,
                pid=process.pid,
                started_in_s=round(time.monotonic() - started, 2),
            )


# --- Apache Kafka (KRaft, single node) -----------------------------------------------------------


def _kafka_cluster_id() -> str:
    """A random cluster id in Kafka's own format: 16 random bytes, URL-safe base64, no padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka's tools reject ids that look like an option
            return cluster_id


def _kafka_fix(fix: str) -> Callable[[str], str]:
    def for_log(log_tail: str) -> str:
        if _SLF4J_NOP_MARKER in log_tail:
            return (
                f"{fix}. Note: SLF4J fell back to its NOP logger, so the broker's own messages are "
                "missing from this log; kafka-lib needs an slf4j-api jar matching its slf4j binding"
            )
        return fix

    return for_log


def _kafka_properties(*, node_id: int, broker_port: int, controller_port: int, log_dir: Path) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": f"{node_id}@{LOOPBACK}:{controller_port}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{broker_port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        # A single node: every internal topic must make do with one replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


@contextmanager
def kafka_server(
    *,
    kafka_lib: Path | None = None,
    java: str | None = None,
    startup_timeout_s: float = KAFKA_TIMEOUT_S,
    workdir_parent: Path | None = None,
) -> Iterator[KafkaService]:
    """A single-node Apache Kafka broker+controller (KRaft) run from the jars in ``.tools/kafka-lib``."""
    service = "Kafka"
    kafka_lib = kafka_lib if kafka_lib is not None else KAFKA_LIB_DIR
    fix = f"run tools/install kafka (puts the broker jars in {KAFKA_LIB_DIR})"
    java_bin = java if java is not None else shutil.which("java")
    if java_bin is None:
        raise ServiceStartError(
            service,
            "no 'java' on PATH",
            fix="install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)",
        )
    if not kafka_lib.is_dir() or not any(kafka_lib.glob("kafka_*.jar")):
        raise ServiceStartError(
            service,
            f"no Kafka broker jars (kafka_<scala>-<version>.jar) in {kafka_lib}",
            fix=fix,
            command=[java_bin, "-cp", f"{kafka_lib}/*", "kafka.Kafka"],
        )

    from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - only the services tier needs it

    started = time.monotonic()
    with _workdir(service, workdir_parent) as workdir:
        broker_port, controller_port = free_port(), free_port()
        while controller_port == broker_port:
            controller_port = free_port()
        properties = workdir / "server.properties"
        properties.write_text(
            _kafka_properties(
                node_id=1, broker_port=broker_port, controller_port=controller_port, log_dir=workdir / "data"
            ),
            encoding="utf-8",
        )
        cluster_id = _kafka_cluster_id()
        classpath = f"{kafka_lib}/*"
        jvm = [
            java_bin,
            *KAFKA_HEAP_OPTS,
            "-Djava.awt.headless=true",
            "-Djava.net.preferIPv4Stack=true",  # plain IPv4 sockets on 127.0.0.1, not v4-mapped IPv6
            f"-Dkafka.logs.dir={workdir / 'logs'}",
        ]
        log_path = workdir / "kafka.log"
        env = _child_env(drop=("KAFKA_OPTS", "KAFKA_HEAP_OPTS", "JAVA_TOOL_OPTIONS", "CLASSPATH"))
        fix_for_log = _kafka_fix(fix)
        _run_once(
            service,
            [
                *jvm,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(properties),
            ],
            log_path,
            fix=fix_for_log,
            timeout_s=startup_timeout_s,
            cwd=workdir,
            env=env,
        )
        process = _Process(
            service,
            [*jvm, "-cp", classpath, "kafka.Kafka", str(properties)],
            log_path,
            fix=fix_for_log,
            cwd=workdir,
            env=env,
        )
        with _managed(process):
            bootstrap = f"{LOOPBACK}:{broker_port}"
            deadline = time.monotonic() + startup_timeout_s
            process.wait_ready(
                lambda: _port_accepts(broker_port), timeout_s=startup_timeout_s, what=f"port {broker_port}"
            )

            def answers() -> bool:
                # A fresh client per probe, so no connection outlives start-up.
                admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})
                metadata = admin.list_topics(timeout=5)
                return 1 in metadata.brokers and bool(metadata.cluster_id == cluster_id)

            process.wait_ready(
                answers,
                timeout_s=max(1.0, deadline - time.monotonic()),
                what="an AdminClient metadata request listing broker 1",
            )
            yield KafkaService(
                host=LOOPBACK,
                port=broker_port,
                controller_port=controller_port,
                bootstrap_servers=bootstrap,
                cluster_id=cluster_id,
                pid=process.pid,
                started_in_s=round(time.monotonic() - started, 2),
            )


# --- S3 API (moto server) ------------------------------------------------------------------------


def _http_get(url: str, timeout_s: float = 3.0) -> tuple[int, str]:
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"refusing to probe a non-loopback URL: {url}")
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback http only
        status: int = response.status
        return status, response.read().decode("utf-8", errors="replace")


@contextmanager
def s3_server(
    *,
    python: str | None = None,
    region: str = "us-east-1",
    startup_timeout_s: float = S3_TIMEOUT_S,
    workdir_parent: Path | None = None,
) -> Iterator[S3Service]:
    """moto's S3-compatible API server as its own process (state is isolated from in-process moto mocks)."""
    service = "S3 API (moto server)"
    python_bin = python if python is not None else sys.executable
    fix = "install the dev dependencies (moto[server]) with tools/install venv"
    started = time.monotonic()
    with _workdir("s3", workdir_parent) as workdir:
        port = free_port()
        process = _Process(
            service,
            [python_bin, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
            workdir / "moto.log",
            fix=fix,
            cwd=workdir,
            env=_child_env({"PYTHONUNBUFFERED": "1"}),
        )
        with _managed(process):
            endpoint = f"http://{LOOPBACK}:{port}"

            def answers() -> bool:
                status, body = _http_get(f"{endpoint}/")
                return status == 200 and "ListAllMyBucketsResult" in body

            process.wait_ready(answers, timeout_s=startup_timeout_s, what="S3 ListBuckets (GET /)")
            yield S3Service(
                host=LOOPBACK,
                port=port,
                endpoint_url=endpoint,
                region=region,
                access_key_id="qframe-test-key",
                secret_access_key="qframe-test-secret",
                pid=process.pid,
                started_in_s=round(time.monotonic() - started, 2),
            )


# --- MinIO server --------------------------------------------------------------------------------

MINIO_BINARY = TOOLS_DIR / "bin" / "minio"
MINIO_TIMEOUT_S = 60.0


@contextmanager
def minio_server(
    *,
    binary: Path | None = None,
    region: str = "us-east-1",
    startup_timeout_s: float = MINIO_TIMEOUT_S,
    workdir_parent: Path | None = None,
) -> Iterator[MinioService]:
    """The pinned MinIO build (``tools/install minio``) on a free loopback port with a temp data dir."""
    service = "MinIO server"
    minio = binary if binary is not None else MINIO_BINARY
    fix = "build it with `tools/install minio` (cached in ~/.cache/qframe-tools)"
    if not minio.exists():
        raise ServiceStartError(service, f"no binary at {minio}", fix=fix)
    started = time.monotonic()
    with _workdir("minio", workdir_parent) as workdir:
        port, console_port = free_port(), free_port()
        data_dir = workdir / "data"
        data_dir.mkdir()
        root_user, root_password = "qframe-root", secrets.token_hex(16)
        command = [
            str(minio),
            "server",
            str(data_dir),
            "--address",
            f"{LOOPBACK}:{port}",
            "--console-address",
            f"{LOOPBACK}:{console_port}",
        ]
        env = _child_env(
            {
                "HOME": str(workdir),
                "MINIO_ROOT_USER": root_user,
                "MINIO_ROOT_PASSWORD": root_password,
                "MINIO_BROWSER": "off",
                "MINIO_UPDATE": "off",
                "MINIO_REGION": region,
            }
        )
        process = _Process(service, command, workdir / "minio.log", fix=fix, cwd=workdir, env=env)
        with _managed(process):
            endpoint = f"http://{LOOPBACK}:{port}"

            def answers() -> bool:
                status, _ = _http_get(f"{endpoint}/minio/health/ready")
                return status == 200

            process.wait_ready(answers, timeout_s=startup_timeout_s, what="GET /minio/health/ready")
            yield MinioService(
                host=LOOPBACK,
                port=port,
                endpoint_url=endpoint,
                region=region,
                access_key_id=root_user,
                secret_access_key=root_password,
                data_dir=data_dir,
                pid=process.pid,
                started_in_s=round(time.monotonic() - started, 2),
            )


# --- MLflow tracking server ----------------------------------------------------------------------


@contextmanager
def mlflow_server(
    *,
    python: str | None = None,
    startup_timeout_s: float = MLFLOW_TIMEOUT_S,
    workdir_parent: Path | None = None,
) -> Iterator[MlflowService]:
    """``mlflow server`` with a sqlite backend and artifacts proxied to a dir, one uvicorn worker."""
    service = "MLflow tracking server"
    python_bin = python if python is not None else sys.executable
    fix = "install the dev dependencies (mlflow) with tools/install venv; read the log above"
    started = time.monotonic()
    with _workdir("mlflow", workdir_parent) as workdir:
        port = free_port()
        artifacts_dir = workdir / "artifacts"
        artifacts_dir.mkdir()
        backend_store_uri = f"sqlite:///{workdir / 'mlflow.db'}"
        command = [
            python_bin,
            "-m",
            "mlflow",
            "server",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            backend_store_uri,
            "--serve-artifacts",
            "--artifacts-destination",
            str(artifacts_dir),
            "--allowed-hosts",
            f"{LOOPBACK}:{port},localhost:{port}",
        ]
        env = _child_env(
            {
                "PYTHONUNBUFFERED": "1",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true",
                # The job runner (huey consumer) is another process and a dir in /dev/shm; not needed.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            },
            drop=("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"),
        )
        process = _Process(service, command, workdir / "mlflow.log", fix=fix, cwd=workdir, env=env)
        with _managed(process):
            tracking_uri = f"http://{LOOPBACK}:{port}"

            def answers() -> bool:
                status, body = _http_get(f"{tracking_uri}/health")
                return status == 200 and body.strip() == "OK"

            process.wait_ready(answers, timeout_s=startup_timeout_s, what="GET /health == OK")
            yield MlflowService(
                host=LOOPBACK,
                port=port,
                tracking_uri=tracking_uri,
                backend_store_uri=backend_store_uri,
                artifacts_dir=artifacts_dir,
                pid=process.pid,
                started_in_s=round(time.monotonic() - started, 2),
            )


__all__ = [
    "KafkaService",
    "MinioService",
    "MlflowService",
    "PostgresService",
    "S3Service",
    "ServiceStartError",
    "free_port",
    "kafka_server",
    "minio_server",
    "mlflow_server",
    "postgres_server",
    "s3_server",
]
