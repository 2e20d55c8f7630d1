"""The Job that gives each consumer its own database and login on an RDS instance.

It runs charts/postgres/files/init-databases.py, the very script the in-cluster chart's hook Job
runs, so there is one source of truth for what a consumer's role and database look like. The chart
itself is not reused: its hook Job only re-runs on a helm upgrade, and a rotated consumer password
changes a Secret, not the release's values; a Pulumi-managed Job is replaced when the digest of the
passwords in its pod template changes, and the unit tier sees it under mocks.

Builders here are pure (manifests as dicts); ``RdsPostgres`` (rds.py) registers them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from infra.charts import CHARTS_DIR
from infra.components.operators import base
from infra.components.postgres import PORT, SUPERUSER_SECRET_KEY, database_name
from infra.images import ImageRef

SCRIPT = CHARTS_DIR / "postgres" / "files" / "init-databases.py"
JOB_NAME = "postgres-init-databases"
COMPONENT = "init-databases"
SCRIPT_DIR = "/opt/init-databases"
SECRETS_DIR = "/etc/init-databases/secrets"
CA_FILE = f"{SCRIPT_DIR}/rds-ca.pem"
# The postgres image's fixed non-root UID (charts/postgres/values.yaml podSecurityContext).
IMAGE_UID = 999
WAIT_SECONDS = 300
BACKOFF_LIMIT = 6
RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
# The pod-template annotation whose change replaces the Job, so a rotated password is applied.
PASSWORDS_DIGEST_ANNOTATION = "qframe.io/passwords-digest"


def init_script() -> str:
    return SCRIPT.read_text(encoding="utf-8")


def consumer_password_file(consumer: str) -> str:
    return f"{SECRETS_DIR}/consumers/{database_name(consumer)}/password"


def consumers_document(consumers: Iterable[str]) -> str:
    """The script's consumer list: names and the files holding their passwords, no secrets."""
    entries = [{"name": database_name(c), "passwordFile": consumer_password_file(c)} for c in consumers]
    return json.dumps(entries, indent=2)


def admin_dsn(host: str, *, user: str, dbname: str, verify_ca: bool, port: int = PORT) -> str:
    """libpq DSN of the master login, TLS always: verify-full against the CA bundle when there is one."""
    tls = f"sslmode=verify-full sslrootcert={CA_FILE}" if verify_ca else "sslmode=require"
    return f"host={host} port={port} user={user} dbname={dbname} connect_timeout=5 {tls}"


def passwords_digest(passwords: Sequence[str]) -> str:
    """Changes whenever any password does; reveals nothing about them (random 32-character values)."""
    digest = hashlib.sha256()
    for password in passwords:
        digest.update(password.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def config_map_data(consumers: Iterable[str], ca_bundle: str | None) -> dict[str, str]:
    data = {"init-databases.py": init_script(), "consumers.json": consumers_document(consumers)}
    if ca_bundle:
        data["rds-ca.pem"] = ca_bundle
    return data


def job_spec(
    *,
    host: str,
    user: str,
    dbname: str,
    image: ImageRef,
    labels: Mapping[str, str],
    config_map: str,
    superuser_secret: str,
    consumer_secrets: Mapping[str, str],
    digest: str,
    verify_ca: bool,
    port: int = PORT,
) -> dict[str, Any]:
    """The Job's spec: restricted pod, no SA token, every password a file from a mounted Secret."""
    sources: list[dict[str, Any]] = [
        {"secret": {"name": superuser_secret, "items": [{"key": SUPERUSER_SECRET_KEY, "path": "superuser/password"}]}}
    ]
    sources += [
        {
            "secret": {
                "name": secret,
                "items": [{"key": "password", "path": consumer_password_file(c).removeprefix(SECRETS_DIR + "/")}],
            }
        }
        for c, secret in consumer_secrets.items()
    ]
    container = {
        "name": COMPONENT,
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "command": [
            "python3",
            f"{SCRIPT_DIR}/init-databases.py",
            "--dsn",
            admin_dsn(host, user=user, dbname=dbname, verify_ca=verify_ca, port=port),
            "--consumers-json",
            f"{SCRIPT_DIR}/consumers.json",
            "--wait-seconds",
            str(WAIT_SECONDS),
            "--password-file",
            f"{SECRETS_DIR}/superuser/password",
        ],
        # Passwords are files, never environment variables (inherited by every child process).
        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "resources": RESOURCES,
        "securityContext": base.container_security_context(IMAGE_UID),
        "volumeMounts": [
            {"name": "script", "mountPath": SCRIPT_DIR, "readOnly": True},
            {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir on a read-only root fs
        ],
    }
    return {
        "backoffLimit": BACKOFF_LIMIT,
        "template": {
            "metadata": {"labels": dict(labels), "annotations": {PASSWORDS_DIGEST_ANNOTATION: digest}},
            "spec": {
                "restartPolicy": "OnFailure",
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": base.pod_security_context(IMAGE_UID),
                "containers": [container],
                "volumes": [
                    {"name": "script", "configMap": {"name": config_map}},
                    {"name": "secrets", "projected": {"defaultMode": 0o440, "sources": sources}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
                ],
            },
        },
    }


def network_policy_spec(selector: Mapping[str, str], cidrs: Sequence[str]) -> dict[str, Any]:
    """Egress to PostgreSQL's port only, and only to ``cidrs`` when they are known (the database
    subnets); DNS comes from the namespace baseline (charts/tenant-baseline)."""
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": PORT}]}
    if cidrs:
        rule["to"] = [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]
    return {"podSelector": {"matchLabels": dict(selector)}, "policyTypes": ["Egress"], "egress": [rule]}
