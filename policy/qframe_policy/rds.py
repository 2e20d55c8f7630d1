"""RDS: storage encrypted, never publicly accessible, automated backups on every stack but dev."""

from __future__ import annotations

from .model import Context, Environment, Resource

INSTANCE = "aws:rds/instance:Instance"
CLUSTER = "aws:rds/cluster:Cluster"
INSTANCE_TYPES = frozenset({INSTANCE})
STORAGE_TYPES = frozenset({INSTANCE, CLUSTER})


def _label(resource: Resource) -> str:
    noun = "RDS cluster" if resource.type == CLUSTER else "RDS instance"
    return f"{noun} '{resource.name}'"


def check_storage_encrypted(resource: Resource, context: Context) -> list[str]:
    if resource.props.get("storageEncrypted") is True:
        return []
    return [f"{_label(resource)}: storageEncrypted is not true; set storage_encrypted=True (optionally kms_key_id)"]


def check_not_public(resource: Resource, context: Context) -> list[str]:
    # Absent means false for RDS, so only an explicit true is refused.
    if resource.props.get("publiclyAccessible") is not True:
        return []
    return [f"{_label(resource)}: publiclyAccessible is true; set publicly_accessible=False and reach it from the VPC"]


def check_backups(resource: Resource, context: Context) -> list[str]:
    if context.environment is Environment.DEV:
        return []
    days = resource.props.get("backupRetentionPeriod")
    # The engine hands numbers over as floats (protobuf Struct).
    if isinstance(days, int | float) and not isinstance(days, bool) and days > 0:
        return []
    return [
        f"{_label(resource)}: backupRetentionPeriod is {days!r} with environment {context.environment.value!r}; "
        "set backup_retention_period to 1..35 days (only environment 'dev' may run without backups)"
    ]
