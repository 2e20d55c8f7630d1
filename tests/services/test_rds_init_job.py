"""The RDS init Job's command (infra/components/postgres/rds_init.py) against a real PostgreSQL.

The server plays RDS: TLS on, and the Job logs in as a master user that is no superuser (CREATEROLE
and CREATEDB only, like RDS's master). The command, the consumer list and the file layout are the
ones the Job gets, with the mount paths moved under a temporary directory.
"""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from infra.components.postgres import database_name, rds_init
from infra.images import ImageRef
from tests.harness.tls import write_server_tls
from tools.services import PostgresService

pytestmark = pytest.mark.services

IMAGE = ImageRef(repository="qframe/postgres", tag="0.1.0", digest="", pull_policy="IfNotPresent")


@pytest.fixture
def tls_postgres(postgres: PostgresService, tmp_path: Path) -> Iterator[Path]:
    """Turns TLS on in the shared server (plain connections keep working) and returns the CA file."""
    tls_dir = write_server_tls(postgres.data_dir.parent / f"tls-{secrets.token_hex(3)}")
    owner = postgres.data_dir.stat()
    for path in (tls_dir, *tls_dir.iterdir()):
        if os.geteuid() == 0:
            os.chown(path, owner.st_uid, owner.st_gid)
    (tls_dir / "tls.key").chmod(0o600)
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SYSTEM SET ssl_cert_file = {}").format(sql.Literal(str(tls_dir / "tls.crt"))))
        conn.execute(sql.SQL("ALTER SYSTEM SET ssl_key_file = {}").format(sql.Literal(str(tls_dir / "tls.key"))))
        conn.execute("ALTER SYSTEM SET ssl = on")
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield tls_dir / "ca.crt"
    finally:
        with psycopg.connect(postgres.dsn, autocommit=True, sslmode="disable") as conn:
            for setting in ("ssl", "ssl_cert_file", "ssl_key_file"):
                conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(setting)))
            conn.execute("SELECT pg_reload_conf()")


@pytest.fixture
def rds_master(postgres: PostgresService) -> Iterator[tuple[str, str]]:
    """A login like RDS's master user: CREATEROLE and CREATEDB, not a superuser."""
    name, secret = f"rds_master_{secrets.token_hex(3)}", secrets.token_hex(16)
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB NOSUPERUSER PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(secret)
            )
        )
    yield name, secret
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def consumers(postgres: PostgresService) -> Iterator[list[str]]:
    """Consumer names as the program spells them (with '-'), unique to this test; dropped afterwards."""
    suffix = secrets.token_hex(3)
    chosen = [f"mlflow-{suffix}", f"catalog-{suffix}", f"mlflow-auth-{suffix}"]
    yield chosen
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        for consumer in chosen:
            name = sql.Identifier(database_name(consumer))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(name))


class JobFiles:
    """The Job's mounts (ConfigMap, projected Secrets) under one directory, and its command."""

    def __init__(self, root: Path, postgres: PostgresService, master: tuple[str, str], consumers: list[str]) -> None:
        self.root = root
        self.consumers = consumers
        self.postgres = postgres
        self.master = master

    def local(self, text: str) -> str:
        return text.replace(rds_init.SCRIPT_DIR, str(self.root / "script")).replace(
            rds_init.SECRETS_DIR, str(self.root / "secrets")
        )

    def write(self, passwords: dict[str, str], ca_bundle: str | None) -> None:
        for name, text in rds_init.config_map_data(self.consumers, ca_bundle).items():
            target = self.root / "script" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.local(text), encoding="utf-8")
        files = {"superuser/password": self.master[1]}
        files.update({f"consumers/{database_name(c)}/password": passwords[c] for c in self.consumers})
        for relative, secret in files.items():
            target = self.root / "secrets" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(secret, encoding="utf-8")

    def run(self, *, verify_ca: bool, wait_seconds: int | None = None) -> subprocess.CompletedProcess[str]:
        spec = rds_init.job_spec(
            host=self.postgres.host,
            port=self.postgres.port,
            user=self.master[0],
            dbname=self.postgres.dbname,
            image=IMAGE,
            labels={},
            config_map="unused",
            superuser_secret="unused",
            consumer_secrets={c: f"postgres-{c}" for c in self.consumers},
            digest="0" * 64,
            verify_ca=verify_ca,
        )
        [container] = spec["template"]["spec"]["containers"]
        command = [self.local(arg) for arg in container["command"]]
        assert command[0] == "python3"
        if wait_seconds is not None:
            command[command.index("--wait-seconds") + 1] = str(wait_seconds)
        # Only the Job's environment: no PGPASSWORD, the master password comes from its file.
        env = {item["name"]: item["value"] for item in container["env"]}
        env.update({"PATH": "/usr/bin:/bin", "PGPASSFILE": str(self.root / "no-pgpass"), "HOME": str(self.root)})
        return subprocess.run(
            [sys.executable, *command[1:]], capture_output=True, text=True, timeout=120, check=False, env=env
        )


def connect_as(
    postgres: PostgresService, user: str, secret: str, dbname: str
) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host=postgres.host,
        port=postgres.port,
        user=user,
        password=secret,
        dbname=dbname,
        sslmode="require",
        connect_timeout=10,
    )


def test_init_job_against_an_rds_like_server_isolates_consumers_and_is_idempotent(
    postgres: PostgresService,
    tls_postgres: Path,
    rds_master: tuple[str, str],
    consumers: list[str],
    tmp_path: Path,
) -> None:
    if os.geteuid() == 0:
        # The server runs as the 'postgres' account; the Job's files are read by this process only.
        pwd.getpwnam("postgres")
    passwords = {c: secrets.token_hex(16) for c in consumers}
    job = JobFiles(tmp_path, postgres, rds_master, consumers)
    job.write(passwords, tls_postgres.read_text(encoding="utf-8"))

    first = job.run(verify_ca=True)
    assert first.returncode == 0, first.stderr
    for consumer in consumers:
        name = database_name(consumer)
        assert f"consumer {name}: created role {name}, database {name}" in first.stdout, first.stdout
    for secret in [*passwords.values(), rds_master[1]]:
        assert secret not in first.stdout + first.stderr

    for consumer in consumers:
        name = database_name(consumer)
        with connect_as(postgres, name, passwords[consumer], name) as conn:
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
            conn.execute("CREATE TABLE runs (id integer PRIMARY KEY)")
            conn.execute("INSERT INTO runs VALUES (1)")
            conn.commit()
            row = conn.execute(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
                " FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            assert row == (False, False, False, False, False)
        # A consumer's login opens its own database and no other consumer's.
        for other in consumers:
            if other != consumer:
                with pytest.raises(psycopg.OperationalError, match="permission denied"):
                    connect_as(postgres, name, passwords[consumer], database_name(other)).close()

    # `pulumi up` with nothing changed would not re-run the Job; a re-run anyway changes nothing.
    second = job.run(verify_ca=True)
    assert second.returncode == 0, second.stderr
    assert all(f"consumer {database_name(c)}: already present" in second.stdout for c in consumers), second.stdout

    # A rotated password (a new GeneratedPassword) reaches the role on the next run.
    rotated, old = consumers[0], passwords[consumers[0]]
    passwords[rotated] = secrets.token_hex(16)
    job.write(passwords, tls_postgres.read_text(encoding="utf-8"))
    third = job.run(verify_ca=True)
    assert third.returncode == 0, third.stderr
    name = database_name(rotated)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect_as(postgres, name, old, name).close()
    for consumer in consumers:
        with connect_as(postgres, database_name(consumer), passwords[consumer], database_name(consumer)) as conn:
            # Nothing was re-created: the rows written after the first run are still there.
            assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)


def test_init_job_refuses_a_server_its_ca_bundle_does_not_vouch_for(
    postgres: PostgresService,
    tls_postgres: Path,
    rds_master: tuple[str, str],
    consumers: list[str],
    tmp_path: Path,
) -> None:
    stranger = write_server_tls(tmp_path / "other-ca") / "ca.crt"
    job = JobFiles(tmp_path / "job", postgres, rds_master, consumers)
    job.write({c: secrets.token_hex(16) for c in consumers}, stranger.read_text(encoding="utf-8"))
    proc = job.run(verify_ca=True, wait_seconds=0)
    assert proc.returncode == 1
    # Both test CAs share a name: OpenSSL finds the impostor as issuer, and its signature fails.
    assert "SSL error" in proc.stderr, proc.stderr
    assert "created role" not in proc.stdout
    # sslmode=require (no bundle configured) still encrypts, without verifying the server.
    plain = job.run(verify_ca=False, wait_seconds=0)
    assert plain.returncode == 0, plain.stderr
