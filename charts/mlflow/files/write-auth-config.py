"""Init container: create the auth app's schema and write its ini (the ini must hold the DB URI).

MLflow's basic-auth app reads its database URI only from an ini file (MLFLOW_AUTH_CONFIG_PATH), and
the URI carries the password, so the file is written here, into an in-memory emptyDir, from the
environment the chart fills from Secrets. The auth app's tables (users, permissions, its
alembic_version_auth) live in their own schema of the mlflow database, apart from the tracking
tables: the issue asks for its own auth database, and the platform's Postgres has one database per
consumer, so a schema is the separate store this login can create by itself.
Idempotent: CREATE SCHEMA IF NOT EXISTS, and the file is rewritten on every start.
"""

import configparser
import os
import sys

import psycopg
from psycopg import sql

REQUIRED = (
    "MLFLOW_DB_USER",
    "MLFLOW_DB_PASSWORD",
    "MLFLOW_DB_HOST",
    "MLFLOW_DB_PORT",
    "MLFLOW_DB_NAME",
    "MLFLOW_DB_SSLMODE",
    "AUTH_SCHEMA",
    "AUTH_DEFAULT_PERMISSION",
    "AUTH_ADMIN_USERNAME",
    "AUTH_CONFIG_PATH",
)


def main() -> int:
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        print(f"write-auth-config: missing environment: {', '.join(missing)} (set by the chart)", file=sys.stderr)
        return 2
    env = os.environ
    schema = env["AUTH_SCHEMA"]
    with psycopg.connect(
        host=env["MLFLOW_DB_HOST"],
        port=int(env["MLFLOW_DB_PORT"]),
        user=env["MLFLOW_DB_USER"],
        password=env["MLFLOW_DB_PASSWORD"],
        dbname=env["MLFLOW_DB_NAME"],
        sslmode=env["MLFLOW_DB_SSLMODE"],
        connect_timeout=10,
        autocommit=True,
    ) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    uri = (
        f"postgresql+psycopg://{env['MLFLOW_DB_USER']}:{env['MLFLOW_DB_PASSWORD']}@{env['MLFLOW_DB_HOST']}:"
        f"{env['MLFLOW_DB_PORT']}/{env['MLFLOW_DB_NAME']}?sslmode={env['MLFLOW_DB_SSLMODE']}"
        f"&options=-csearch_path%3D{schema}"
    )
    config = configparser.ConfigParser()
    # '%' is configparser's interpolation character; doubled, it reads back as one.
    config["mlflow"] = {
        "default_permission": env["AUTH_DEFAULT_PERMISSION"],
        "database_uri": uri.replace("%", "%%"),
        "admin_username": env["AUTH_ADMIN_USERNAME"],
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    path = env["AUTH_CONFIG_PATH"]
    with open(path, "w", encoding="utf-8") as handle:
        config.write(handle)
    os.chmod(path, 0o600)
    print(f"write-auth-config: schema {schema} ready, {path} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
