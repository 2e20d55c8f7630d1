"""Every rule of the pack, in one tuple: a new rule is one entry here plus its fixtures."""

from __future__ import annotations

from . import configmaps, eks, iam, rds, s3, workloads
from .model import Rule

RULES: tuple[Rule, ...] = (
    Rule(
        "s3-bucket-encrypted",
        "Every S3 bucket has a server-side encryption configuration with SSE-KMS or AES256.",
        stack_check=s3.check_encrypted,
    ),
    Rule(
        "s3-bucket-versioned",
        "Every S3 bucket has versioning Enabled.",
        stack_check=s3.check_versioned,
    ),
    Rule(
        "s3-bucket-public-access-blocked",
        "Every S3 bucket has a public access block with all four flags on.",
        stack_check=s3.check_public_access_blocked,
    ),
    Rule(
        "s3-bucket-tls-only",
        "Every S3 bucket has a bucket policy denying requests made without TLS (aws:SecureTransport false).",
        stack_check=s3.check_tls_only,
    ),
    Rule(
        "rds-storage-encrypted",
        "RDS instances and clusters encrypt their storage.",
        types=rds.STORAGE_TYPES,
        check=rds.check_storage_encrypted,
    ),
    Rule(
        "rds-not-publicly-accessible",
        "RDS instances are not publicly accessible.",
        types=rds.INSTANCE_TYPES,
        check=rds.check_not_public,
    ),
    Rule(
        "rds-backups-off-dev",
        "RDS instances and clusters keep automated backups (retention > 0) unless the stack's environment is dev.",
        types=rds.STORAGE_TYPES,
        check=rds.check_backups,
        uses_environment=True,
    ),
    Rule(
        "iam-no-wildcards",
        "IAM policies allow exact actions on exact resources: no '*' in Action, no '*' Resource.",
        types=iam.TYPES,
        check=iam.check_no_wildcards,
    ),
    Rule(
        "eks-endpoint-not-open",
        "The EKS public API endpoint is off or limited to listed CIDRs, never 0.0.0.0/0.",
        types=eks.TYPES,
        check=eks.check_endpoint_not_open,
    ),
    Rule(
        "k8s-workload-non-root",
        "Every container of a Kubernetes workload runs as non-root (runAsNonRoot, no UID 0).",
        types=workloads.TYPES,
        check=workloads.check_non_root,
    ),
    Rule(
        "k8s-workload-capabilities-dropped",
        "Every container of a Kubernetes workload drops ALL capabilities and adds none.",
        types=workloads.TYPES,
        check=workloads.check_capabilities_dropped,
    ),
    Rule(
        "k8s-workload-read-only-root-fs",
        "Every container of a Kubernetes workload has a read-only root filesystem.",
        types=workloads.TYPES,
        check=workloads.check_read_only_root_filesystem,
    ),
    Rule(
        "k8s-workload-resources",
        "Every container of a Kubernetes workload sets cpu and memory requests and limits.",
        types=workloads.TYPES,
        check=workloads.check_resources,
    ),
    Rule(
        "k8s-configmap-no-secrets",
        "ConfigMaps hold no credentials (secret-like keys, PEM private keys, AWS access key IDs).",
        types=configmaps.TYPES,
        check=configmaps.check_no_secrets,
    ),
)

RULES_BY_NAME = {rule.name: rule for rule in RULES}
if len(RULES_BY_NAME) != len(RULES):
    raise RuntimeError("two rules share a name")
