#!/usr/bin/env python3
"""Create one database and one login role per consumer; safe to run any number of times.

For each consumer ``name`` the script makes sure that:

* a role ``name`` exists with LOGIN and without SUPERUSER, CREATEDB, CREATEROLE, REPLICATION and
  BYPASSRLS, and its password is the consumer's current password (re-set on every run);
* a database ``name`` exists and is owned by that role;
* CONNECT and TEMPORARY on that database are revoked from PUBLIC, so other roles cannot use it.

The login in ``--dsn`` need not be a superuser: a role with CREATEROLE and CREATEDB (what a managed
service such as RDS gives its master user) is enough. Such a login may not name the SUPERUSER,
REPLICATION or BYPASSRLS attributes in ALTER ROLE at all, so an existing role is only given the
attributes it lacks, and it must be a member of a role to make it a database's owner, so it grants
itself each consumer's role first.

Usage (in the chart's Job, or on a workstation)::

    python3 init-databases.py --dsn "host=... port=5432 user=postgres dbname=postgres" \
        --consumers-json consumers.json

The superuser password comes from ``--password-file`` (the chart mounts the Secret as a file, so
it never sits in the pod's environment) or else libpq's own sources (PGPASSWORD, PGPASSFILE). The JSON file is a list of
objects with ``name`` and exactly one of ``password``, ``passwordEnv`` (the name of an environment
variable) or ``passwordFile`` (a path), so the file itself need not hold secrets. Identifiers are
quoted with psycopg.sql; passwords are sent as SCRAM verifiers (hashed here) and never printed.
Requires Python 3.9+ and psycopg 3.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Any

import psycopg
from psycopg import sql

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
# Each attribute of ROLE_ATTRIBUTES with the pg_roles column that holds it and the wanted value.
ATTRIBUTE_COLUMNS = {
    "LOGIN": "rolcanlogin",
    "SUPERUSER": "rolsuper",
    "CREATEDB": "rolcreatedb",
    "CREATEROLE": "rolcreaterole",
    "REPLICATION": "rolreplication",
    "BYPASSRLS": "rolbypassrls",
    "INHERIT": "rolinherit",
}
WANTED = {keyword: keyword in ("LOGIN", "INHERIT") for keyword in ATTRIBUTE_COLUMNS}


class ConfigError(ValueError):
    """The consumer list is unusable; the message says which entry and why."""


def load_consumers(path: str, environ: dict[str, str]) -> list[tuple[str, str]]:
    """(name, password) pairs from the JSON file, passwords resolved from env or files."""
    with open(path, encoding="utf-8") as handle:
        entries = json.load(handle)
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a JSON list of consumers")
    consumers: list[tuple[str, str]] = []
    seen = set()
    for index, entry in enumerate(entries):
        where = f"{path}[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object with name and password")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"{where}: name {name!r} must match {NAME.pattern}")
        if name in seen:
            raise ConfigError(f"{where}: consumer {name!r} is listed twice")
        seen.add(name)
        sources = [key for key in ("password", "passwordEnv", "passwordFile") if key in entry]
        if len(sources) != 1:
            raise ConfigError(f"{where}: give exactly one of password, passwordEnv, passwordFile")
        password = _password(entry, sources[0], environ, where)
        if not password:
            raise ConfigError(f"{where}: the password of {name!r} is empty")
        consumers.append((name, password))
    return consumers


def _password(entry: dict[str, Any], source: str, environ: dict[str, str], where: str) -> str:
    if source == "password":
        value = entry["password"]
    elif source == "passwordEnv":
        variable = entry["passwordEnv"]
        if variable not in environ:
            raise ConfigError(f"{where}: environment variable {variable} is not set")
        value = environ[variable]
    else:
        with open(entry["passwordFile"], encoding="utf-8") as handle:
            value = handle.read().rstrip("\r\n")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: the password must be a string")
    return value


def read_secret_file(path: str, what: str) -> str:
    """A password from a mounted Secret: the file's text without its trailing newline."""
    with open(path, encoding="utf-8") as handle:
        value = handle.read().rstrip("\r\n")
    if not value:
        raise ConfigError(f"{path}: the {what} is empty")
    return value


def connect(dsn: str, wait_seconds: float, password: str | None = None) -> psycopg.Connection[Any]:
    """An admin connection in autocommit mode, retrying until the server accepts it."""
    deadline = time.monotonic() + wait_seconds
    extra = {} if password is None else {"password": password}
    while True:
        try:
            return psycopg.connect(dsn, autocommit=True, **extra)
        except psycopg.OperationalError as exc:
            if time.monotonic() >= deadline:
                raise
            print(f"server not ready yet ({str(exc).strip().splitlines()[0]}); retrying", flush=True)
            time.sleep(2)


def attribute_fixes(current: dict[str, bool]) -> list[str]:
    """The ALTER ROLE keywords that bring ``current`` (keyword -> value) to ROLE_ATTRIBUTES."""
    return [
        keyword if WANTED[keyword] else f"NO{keyword}" for keyword, value in current.items() if value != WANTED[keyword]
    ]


def is_superuser(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def _grant_membership(conn: psycopg.Connection[Any], name: str) -> None:
    """A non-superuser may only hand a database to a role it is a member of (CREATE/ALTER DATABASE ... OWNER)."""
    member = conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (name,)).fetchone()
    if not (member and member[0]):
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(name)))


def ensure_consumer(conn: psycopg.Connection[Any], name: str, password: str) -> list[str]:
    """Brings one consumer's role and database to the wanted state; returns what was created."""
    created: list[str] = []
    role = sql.Identifier(name)
    attributes = sql.SQL(ROLE_ATTRIBUTES)
    # The verifier, computed here as psql's \password does: the cleartext never reaches the server.
    secret = sql.Literal(conn.pgconn.encrypt_password(password.encode(), name.encode()).decode())
    columns = sql.SQL(", ").join(sql.Identifier(column) for column in ATTRIBUTE_COLUMNS.values())
    current = conn.execute(
        sql.SQL("SELECT {} FROM pg_catalog.pg_roles WHERE rolname = %s").format(columns), (name,)
    ).fetchone()
    if current is None:
        conn.execute(sql.SQL("CREATE ROLE {} WITH {} PASSWORD {}").format(role, attributes, secret))
        created.append(f"role {name}")
    else:
        conn.execute(sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(role, secret))
        wrong = attribute_fixes(dict(zip(ATTRIBUTE_COLUMNS, current)))  # noqa: B905 - Python 3.9
        if wrong:
            conn.execute(sql.SQL("ALTER ROLE {} WITH {}").format(role, sql.SQL(" ".join(wrong))))
    if not is_superuser(conn):
        _grant_membership(conn, name)
    exists = conn.execute("SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (name,)).fetchone()
    if exists is None:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'").format(role, role))
        created.append(f"database {name}")
    else:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(role, role))
    conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(role))
    conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(role, role))
    return created


def run(
    dsn: str, consumers: list[tuple[str, str]], wait_seconds: float = 0, superuser_password: str | None = None
) -> None:
    with connect(dsn, wait_seconds, superuser_password) as conn:
        # Statements carry password verifiers: keep them out of the server log for this session.
        # Only a superuser may; a managed service's master user is refused, and then the log can
        # show at most a SCRAM verifier (ensure_consumer never sends a password in clear).
        try:
            conn.execute("SET log_statement = 'none'")
            conn.execute("SET log_min_duration_statement = -1")
        except psycopg.errors.InsufficientPrivilege:
            print("statement logging stays as the server has it (not a superuser)", flush=True)
        for name, password in consumers:
            created = ensure_consumer(conn, name, password)
            state = "created " + ", ".join(created) if created else "already present; password re-set"
            print(f"consumer {name}: {state}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string of a superuser")
    parser.add_argument(
        "--consumers-json", required=True, help="JSON list of {name, password|passwordEnv|passwordFile}"
    )
    parser.add_argument("--wait-seconds", type=float, default=0, help="retry connecting for this long")
    parser.add_argument(
        "--password-file", help="file holding the superuser password (default: libpq's PGPASSWORD/PGPASSFILE)"
    )
    args = parser.parse_args(argv)
    try:
        password = None if args.password_file is None else read_secret_file(args.password_file, "superuser password")
        consumers = load_consumers(args.consumers_json, dict(os.environ))
        run(args.dsn, consumers, args.wait_seconds, password)
    except (ConfigError, OSError, psycopg.Error) as exc:
        print(f"init-databases failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
