"""Init container: write the basic-auth app's ini (the ini must hold the auth database's URI).

MLflow's basic-auth app reads its database URI only from an ini file (MLFLOW_AUTH_CONFIG_PATH), and
the URI carries the password, so the file is written here, into an in-memory emptyDir, from the
environment the chart fills from the auth database's own Secret (``postgres-mlflow-auth``: its own
database and login on the platform's Postgres, apart from the tracking store). The auth app creates
and migrates its tables itself when the server starts. A login that does not work fails here, with
the Secret to check, instead of inside the server's start-up.
Idempotent: the file is rewritten on every start.
"""

import configparser
import os
import sys
from urllib.parse import quote

import psycopg

REQUIRED = (
    "AUTH_DB_USER",
    "AUTH_DB_PASSWORD",
    "AUTH_DB_HOST",
    "AUTH_DB_PORT",
    "AUTH_DB_NAME",
    "AUTH_DB_SSLMODE",
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
    try:
        with psycopg.connect(
            host=env["AUTH_DB_HOST"],
            port=int(env["AUTH_DB_PORT"]),
            user=env["AUTH_DB_USER"],
            password=env["AUTH_DB_PASSWORD"],
            dbname=env["AUTH_DB_NAME"],
            sslmode=env["AUTH_DB_SSLMODE"],
            connect_timeout=10,
        ) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(
            f"write-auth-config: cannot log in to the auth database {env['AUTH_DB_NAME']!r} as "
            f"{env['AUTH_DB_USER']!r}: {first}\n  fix: check the Secret named by auth.database.existingSecret",
            file=sys.stderr,
        )
        return 1
    uri = (
        f"postgresql+psycopg://{quote(env['AUTH_DB_USER'], safe='')}:{quote(env['AUTH_DB_PASSWORD'], safe='')}"
        f"@{env['AUTH_DB_HOST']}:{env['AUTH_DB_PORT']}/{quote(env['AUTH_DB_NAME'], safe='')}"
        f"?sslmode={env['AUTH_DB_SSLMODE']}"
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
    print(f"write-auth-config: auth database {env['AUTH_DB_NAME']} reachable, {path} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
