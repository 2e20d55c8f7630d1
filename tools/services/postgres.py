"""A throw-away PostgreSQL cluster on 127.0.0.1: initdb, a scram-protected superuser, one database.

The server binaries come from ``.tools/bin`` (``tools/install postgres`` links them there). Run as
root, initdb and postgres refuse to start, so they run as the 'postgres' system account instead.
"""

from __future__ import annotations

import os
import pwd
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tools.paths import TOOLS_BIN
from tools.services._net import LOOPBACK, free_port
from tools.services._process import RunAs, ServiceProcess, child_env, run_once, service_workdir, stopped_on_exit
from tools.services.errors import ServiceStartError

POSTGRES_BIN_DIR = TOOLS_BIN
POSTGRES_TIMEOUT_S = 60.0


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


_POSTGRES_TOOLS = ("initdb", "postgres")


def _postgres_account(service: str, fix: str) -> RunAs | None:
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
    return RunAs(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


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
    with service_workdir(service, workdir_parent) as workdir:
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
        env = child_env({"LC_ALL": "C", "HOME": str(workdir)}, drop=("PGDATA", "PGHOST", "PGPORT"))
        log_path = workdir / "postgres.log"
        run_once(
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
        process = ServiceProcess(
            service,
            command,
            log_path,
            fix=f"read the log above; {fix} if binaries are missing",
            cwd=workdir,
            env=env,
            run_as=run_as,
            stop_signal=signal.SIGINT,  # "fast" shutdown: roll back sessions, exit promptly
        )
        with stopped_on_exit(process):
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
