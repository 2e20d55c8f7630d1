"""charts/postgres/files/init-databases.py against a real PostgreSQL: run twice, prove isolation."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.harness import charts
from tools.services import PostgresService

pytestmark = pytest.mark.services

SCRIPT = charts.REPO_ROOT / "charts" / "postgres" / "files" / "init-databases.py"


def password() -> str:
    return secrets.token_hex(16)


def run_script(postgres: PostgresService, consumers_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # The superuser password reaches the script as libpq's PGPASSWORD, as in the chart's Job.
    dsn = f"host={postgres.host} port={postgres.port} user={postgres.user} dbname={postgres.dbname}"
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--dsn", dsn, "--consumers-json", str(consumers_file), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PGPASSWORD": postgres.password, "PATH": "/usr/bin:/bin"},
    )


def connect_as(
    postgres: PostgresService, user: str, secret: str, dbname: str
) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host=postgres.host, port=postgres.port, user=user, password=secret, dbname=dbname, connect_timeout=10
    )


@pytest.fixture
def names(postgres: PostgresService) -> Iterator[list[str]]:
    """Three consumer names unique to this test; their databases and roles are dropped afterwards."""
    suffix = secrets.token_hex(3)
    chosen = [f"mlflow_{suffix}", f"catalog_{suffix}", f"jupyterhub_{suffix}"]
    yield chosen
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        for name in chosen:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_init_script_creates_isolated_databases_and_is_idempotent(
    postgres: PostgresService, names: list[str], tmp_path: Path
) -> None:
    passwords = {name: password() for name in names}
    # Inline passwords and one read from a file (the environment variant has its own test below).
    secret_file = tmp_path / "catalog-password"
    secret_file.write_text(passwords[names[1]] + "\n", encoding="utf-8")
    consumers = tmp_path / "consumers.json"
    consumers.write_text(
        json.dumps(
            [
                {"name": names[0], "password": passwords[names[0]]},
                {"name": names[1], "passwordFile": str(secret_file)},
                {"name": names[2], "password": passwords[names[2]]},
            ]
        ),
        encoding="utf-8",
    )

    first = run_script(postgres, consumers)
    assert first.returncode == 0, first.stderr
    assert all(f"consumer {n}: created role {n}, database {n}" in first.stdout for n in names), first.stdout
    for secret in passwords.values():
        assert secret not in first.stdout + first.stderr

    for name in names:
        with connect_as(postgres, name, passwords[name], name) as conn:
            conn.execute("CREATE TABLE runs (id integer PRIMARY KEY, note text)")
            conn.execute("INSERT INTO runs VALUES (1, 'ok')")
            assert conn.execute("SELECT note FROM runs").fetchone() == ("ok",)
            row = conn.execute(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
                " FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            assert row == (False, False, False, False, False)
            owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
            ).fetchone()
            assert owner == (name,)
        for other in names:
            if other != name:
                with pytest.raises(psycopg.OperationalError, match="permission denied"):
                    connect_as(postgres, name, passwords[name], other).close()

    # Second run: one password changed (as when its Secret was rotated), the rest unchanged.
    old = passwords[names[0]]
    passwords[names[0]] = password()
    consumers.write_text(
        json.dumps([{"name": n, "password": passwords[n]} for n in names]),
        encoding="utf-8",
    )
    second = run_script(postgres, consumers)
    assert second.returncode == 0, second.stderr
    assert all(f"consumer {n}: already present; password re-set" in second.stdout for n in names), second.stdout

    with connect_as(postgres, names[0], passwords[names[0]], names[0]) as conn:
        # The data written before the second run is still there: nothing was re-created.
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect_as(postgres, names[0], old, names[0]).close()
    for name in names[1:]:
        with connect_as(postgres, name, passwords[name], name) as conn:
            assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)

    with psycopg.connect(postgres.dsn) as conn:
        for name in names:
            acl = conn.execute("SELECT datacl::text FROM pg_database WHERE datname = %s", (name,)).fetchone()
            assert acl is not None
            # No "=c" / "=Tc" entry for PUBLIC (an ACL item with an empty grantee).
            assert not any(item.startswith("=") for item in acl[0].strip("{}").split(",")), acl


def test_passwords_can_come_from_the_environment(postgres: PostgresService, tmp_path: Path) -> None:
    name = f"envuser_{secrets.token_hex(3)}"
    secret = password()
    consumers = tmp_path / "consumers.json"
    consumers.write_text(json.dumps([{"name": name, "passwordEnv": "CONSUMER_PASSWORD_X"}]), encoding="utf-8")
    dsn = f"host={postgres.host} port={postgres.port} user={postgres.user} dbname={postgres.dbname}"
    try:
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), "--dsn", dsn, "--consumers-json", str(consumers)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={"PGPASSWORD": postgres.password, "CONSUMER_PASSWORD_X": secret},
        )
        assert proc.returncode == 0, proc.stderr
        with connect_as(postgres, name, secret, name) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (name,)
    finally:
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"name": "Bad-Name", "password": "x"}], "must match"),
        ([{"name": "dup", "password": "x"}, {"name": "dup", "password": "y"}], "listed twice"),
        ([{"name": "nopass"}], "exactly one of"),
        ([{"name": "missing", "passwordEnv": "SURELY_NOT_SET_ANYWHERE"}], "SURELY_NOT_SET_ANYWHERE is not set"),
    ],
)
def test_bad_consumer_lists_fail_before_connecting(
    postgres: PostgresService, tmp_path: Path, entries: list[dict[str, str]], message: str
) -> None:
    consumers = tmp_path / "consumers.json"
    consumers.write_text(json.dumps(entries), encoding="utf-8")
    proc = run_script(postgres, consumers)
    assert proc.returncode == 1
    assert message in proc.stderr


def test_superuser_password_comes_from_a_file_as_in_the_chart_job(postgres: PostgresService, tmp_path: Path) -> None:
    # The chart mounts every password as a file and sets no PGPASSWORD: the script must log in
    # with --password-file alone, and a wrong file must fail the login.
    name = f"fileuser_{secrets.token_hex(3)}"
    secret = password()
    (tmp_path / "superuser").write_text(postgres.password + "\n", encoding="utf-8")
    (tmp_path / "consumer").write_text(secret + "\n", encoding="utf-8")
    consumers = tmp_path / "consumers.json"
    consumers.write_text(json.dumps([{"name": name, "passwordFile": str(tmp_path / "consumer")}]), encoding="utf-8")
    dsn = f"host={postgres.host} port={postgres.port} user={postgres.user} dbname={postgres.dbname}"
    command = [sys.executable, str(SCRIPT), "--dsn", dsn, "--consumers-json", str(consumers)]
    no_password_env = {"PATH": "/usr/bin:/bin", "PGPASSFILE": str(tmp_path / "no-such-pgpass")}
    try:
        proc = subprocess.run(
            [*command, "--password-file", str(tmp_path / "superuser")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=no_password_env,
        )
        assert proc.returncode == 0, proc.stderr
        assert postgres.password not in proc.stdout + proc.stderr
        with connect_as(postgres, name, secret, name) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (name,)
        (tmp_path / "wrong").write_text("not-the-password\n", encoding="utf-8")
        wrong = subprocess.run(
            [*command, "--password-file", str(tmp_path / "wrong")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=no_password_env,
        )
        assert wrong.returncode == 1
        assert "password authentication failed" in wrong.stderr
        assert "not-the-password" not in wrong.stdout + wrong.stderr
    finally:
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
