"""PostgreSQL for the platform's metadata, in two variants with the same outputs.

``in-cluster`` (in_cluster.py) installs charts/postgres; ``rds`` (rds.py) creates an RDS instance
with pulumi-aws. Each consumer (MLflow's tracking and auth stores, the data catalog, JupyterHub) gets a Secret
``postgres-<consumer>`` with username, password, database, host, port and a ready ``uri``, so
consumers never branch on the kind or assemble connection strings.
"""

from __future__ import annotations

PORT = 5432
# mlflow-auth: MLflow's basic-auth app (users and permissions), a store of its own apart from the
# tracking store (issue 12).
CONSUMERS: tuple[str, ...] = ("mlflow", "catalog", "jupyterhub", "mlflow-auth")
SUPERUSER_SECRET = "postgres-superuser"  # noqa: S105 - a Secret's name, not a credential
SUPERUSER_SECRET_KEY = "postgres-password"  # noqa: S105 - a key name, not a credential
# Pods carrying this label are admitted to port 5432 by the in-cluster chart's NetworkPolicy.
CLIENT_LABEL = {"qframe.io/postgres-client": "true"}


def consumer_secret_name(consumer: str) -> str:
    return f"postgres-{consumer}"


def database_name(consumer: str) -> str:
    """The consumer's database and login role: a PostgreSQL identifier, so '-' becomes '_'."""
    return consumer.replace("-", "_")


def connection_uri(*, user: str, password: str, host: str, port: int, database: str, tls: bool = False) -> str:
    # Generated passwords are letters and digits only (infra/passwords.py), so no URL quoting is needed.
    # RDS for PostgreSQL 15+ refuses unencrypted connections by default, hence ``tls`` there.
    uri = f"postgresql://{user}:{password}@{host}:{port}/{database}"
    return f"{uri}?sslmode=require" if tls else uri
