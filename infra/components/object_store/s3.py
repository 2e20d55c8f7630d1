"""The ``s3`` object store: the platform buckets and a least-privilege IAM policy (pulumi-aws).

Each platform bucket (data lake, MLflow artifacts) gets versioning, default server-side encryption
(the configured KMS key, else SSE-S3), every public access block, ``BucketOwnerEnforced``
ownership (ACLs disabled), a bucket policy refusing any request not made over TLS, and a lifecycle
configuration that expires the scratch prefix and aborts incomplete multipart uploads.

Workloads reach S3 through an IAM principal (an IRSA / Pod Identity role or a user) named in
config: this component creates one IAM policy limited to exactly these buckets and the actions the
platform uses, and attaches it to that principal. No access keys are created, so
``credentials_secrets`` is empty and workloads use the pod's AWS credentials chain (the role).
The AWS provider comes from the program through ``providers=`` (infra/providers.py).

The policy documents and lifecycle rules are pure builders returning plain data, so tests can
check them without Pulumi.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.aws.kms import resolved_key_arn
from infra.components.object_store import BUCKET_KEYS, bucket_names
from infra.config import PROJECT, Buckets, S3Settings

# Incomplete multipart uploads are billed storage nobody can read; drop them after this many days.
ABORT_MULTIPART_DAYS = 7

BUCKET_ACTIONS: tuple[str, ...] = ("s3:ListBucket", "s3:GetBucketLocation")
OBJECT_ACTIONS: tuple[str, ...] = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
KMS_ACTIONS: tuple[str, ...] = ("kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt")


def partition(region: str) -> str:
    """The AWS partition a region belongs to (ARNs and endpoints differ per partition)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def bucket_arn(bucket: str, region: str = "") -> str:
    """A bucket's ARN, known from its name alone (S3 bucket ARNs carry no account or region)."""
    return f"arn:{partition(region)}:s3:::{bucket}"


def endpoint(region: str) -> str:
    suffix = ".cn" if partition(region) == "aws-cn" else ""
    return f"https://s3.{region}.amazonaws.com{suffix}"


def bucket_policy_document(bucket_arn: str) -> dict[str, Any]:
    """Refuses every request to the bucket or its objects that is not made over TLS."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def workload_policy_document(bucket_arns: list[str], kms_key_arn: str | None) -> dict[str, Any]:
    """Exactly the S3 (and KMS) actions the platform's workloads use, on exactly these buckets."""
    if not bucket_arns:
        raise ValueError("the workload policy needs at least one bucket ARN")
    for arn in bucket_arns:
        if "*" in arn:
            raise ValueError(f"bucket ARN {arn!r} contains a wildcard")
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ListPlatformBuckets",
            "Effect": "Allow",
            "Action": list(BUCKET_ACTIONS),
            "Resource": list(bucket_arns),
        },
        {
            "Sid": "ReadWritePlatformObjects",
            "Effect": "Allow",
            "Action": list(OBJECT_ACTIONS),
            "Resource": [f"{arn}/*" for arn in bucket_arns],
        },
    ]
    if kms_key_arn is not None:
        statements.append(
            {
                "Sid": "UseBucketKmsKey",
                "Effect": "Allow",
                "Action": list(KMS_ACTIONS),
                "Resource": [kms_key_arn],
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def lifecycle_rules(*, scratch_prefix: str, expiration_days: int) -> list[dict[str, Any]]:
    """Expire the scratch prefix (current and noncurrent versions); abort stale multipart uploads."""
    days = expiration_days
    return [
        {
            "id": "expire-scratch",
            "status": "Enabled",
            "filter": {"prefix": scratch_prefix},
            "expiration": {"days": days},
            # Versioning keeps expired objects as noncurrent versions; remove those as well.
            "noncurrent_version_expiration": {"noncurrent_days": days},
        },
        {
            "id": "abort-incomplete-multipart-uploads",
            "status": "Enabled",
            "filter": {},  # the whole bucket
            "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_DAYS},
        },
    ]


def encryption_rule(kms_key_arn: pulumi.Input[str] | None) -> dict[str, Any]:
    if kms_key_arn is None:
        return {"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}
    return {
        "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms", "kms_master_key_id": kms_key_arn},
        # S3 Bucket Keys cut the number of KMS requests (and their cost) per object.
        "bucket_key_enabled": True,
    }


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", name)


@dataclass
class S3ObjectStoreArgs:
    buckets: Buckets
    settings: S3Settings
    region: str
    """The AWS provider's region (ARNs and the endpoint depend on its partition)."""
    tags: Mapping[str, str]
    protect: bool = False
    """``protectStateful``: buckets refuse deletion and are retained when removed from the program."""


class S3ObjectStore(pulumi.ComponentResource):
    """S3 buckets for the platform plus an IAM policy for its workloads; AWS provider via ``providers=``."""

    endpoint: pulumi.Output[str]
    buckets: pulumi.Output[dict[str, str]]
    credentials_secrets: pulumi.Output[dict[str, str]]
    policy_arn: pulumi.Output[str]

    def __init__(self, name: str, args: S3ObjectStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token predates the variants' split; changing it would replace deployed stacks.
        super().__init__("qframe:aws:ObjectStore", name, None, opts)
        s3 = args.settings
        region = args.region
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)
        stateful = pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect)

        names = bucket_names(args.buckets)
        arns = [bucket_arn(names[key], region) for key in BUCKET_KEYS]
        # An alias in config becomes its key's ARN: IAM's kms actions match keys, never aliases.
        key_arn = None if s3.kms_key_arn is None else resolved_key_arn(s3.kms_key_arn, parent=self)
        for key in BUCKET_KEYS:
            bucket_name = names[key]
            prefix = f"{name}-{key.replace('_', '-')}"
            bucket = aws.s3.Bucket(
                prefix,
                bucket=bucket_name,
                force_destroy=s3.force_destroy,
                tags={**tags, "qframe.io/bucket": key},
                opts=stateful,
            )
            # `bucket.bucket` (not `id`) names the bucket and orders the settings after it.
            aws.s3.BucketOwnershipControls(
                f"{prefix}-ownership",
                bucket=bucket.bucket,
                rule={"object_ownership": "BucketOwnerEnforced"},
                opts=child,
            )
            public_access = aws.s3.BucketPublicAccessBlock(
                f"{prefix}-public-access",
                bucket=bucket.bucket,
                block_public_acls=True,
                block_public_policy=True,
                ignore_public_acls=True,
                restrict_public_buckets=True,
                opts=child,
            )
            aws.s3.BucketVersioning(
                f"{prefix}-versioning",
                bucket=bucket.bucket,
                versioning_configuration={"status": "Enabled"},
                opts=child,
            )
            aws.s3.BucketServerSideEncryptionConfiguration(
                f"{prefix}-encryption",
                bucket=bucket.bucket,
                rules=[encryption_rule(key_arn)],  # type: ignore[list-item]
                opts=child,
            )
            aws.s3.BucketPolicy(
                f"{prefix}-tls-only",
                bucket=bucket.bucket,
                policy=json.dumps(bucket_policy_document(bucket_arn(bucket_name, region))),
                # S3 rejects policy writes that race the public access block on a new bucket.
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[public_access])),
            )
            aws.s3.BucketLifecycleConfiguration(
                f"{prefix}-lifecycle",
                bucket=bucket.bucket,
                rules=lifecycle_rules(  # type: ignore[arg-type]
                    scratch_prefix=args.buckets.scratch_prefix, expiration_days=s3.scratch_expiration_days
                ),
                opts=child,
            )

        policy = aws.iam.Policy(
            f"{name}-workloads",
            name=_sanitize(f"{PROJECT}-{pulumi.get_stack()}-object-store"),
            description=f"{PROJECT}: workload access to the platform's S3 buckets",
            policy=pulumi.Output.from_input(key_arn).apply(lambda key: json.dumps(workload_policy_document(arns, key))),
            tags=tags,
            opts=child,
        )
        principal = s3.principal
        if principal is not None and principal.kind == "role":
            aws.iam.RolePolicyAttachment(
                f"{name}-workloads-role",
                role=principal.name,
                policy_arn=policy.arn,
                opts=child,
            )
        elif principal is not None:
            aws.iam.UserPolicyAttachment(
                f"{name}-workloads-user",
                user=principal.name,
                policy_arn=policy.arn,
                opts=child,
            )

        self.endpoint = pulumi.Output.from_input(endpoint(region))
        self.buckets = pulumi.Output.from_input(names)
        # No access keys for S3: workloads authenticate with the IAM principal above.
        self.credentials_secrets = pulumi.Output.from_input({})
        self.policy_arn = policy.arn
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "buckets": self.buckets,
                "credentials_secrets": self.credentials_secrets,
                "policy_arn": self.policy_arn,
            }
        )
