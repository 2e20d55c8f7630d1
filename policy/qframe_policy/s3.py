"""S3: every bucket has its companion resources (pulumi-aws v6/v7 split bucket settings out of the bucket).

A bucket counts as configured only by separate resources naming it in ``bucket``: an encryption
configuration, a versioning resource, a public access block and a bucket policy (inline settings on
the Bucket itself are deprecated in pulumi-aws v7 and not accepted). A companion belongs to a bucket
when its ``bucket`` input equals the bucket's name or was computed from the bucket's URN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .model import Context, Finding, Resource, as_list, as_map, dig, policy_document, statements

BUCKET_TYPES = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
ENCRYPTION_TYPES = frozenset(
    {
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
    }
)
VERSIONING_TYPES = frozenset(
    {"aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2"}
)
PUBLIC_ACCESS_BLOCK_TYPES = frozenset({"aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"})
POLICY_TYPES = frozenset({"aws:s3/bucketPolicy:BucketPolicy"})

SSE_ALGORITHMS = ("aws:kms", "aws:kms:dsse", "AES256")
PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def bucket_name(bucket: Resource) -> str | None:
    name = bucket.props.get("bucket")
    return name if isinstance(name, str) and name else None


def _label(bucket: Resource) -> str:
    name = bucket_name(bucket)
    return f"S3 bucket '{name}' (resource '{bucket.name}')" if name else f"S3 bucket resource '{bucket.name}'"


def companions(bucket: Resource, resources: Sequence[Resource], types: frozenset[str]) -> list[Resource]:
    name = bucket_name(bucket)
    found = []
    for resource in resources:
        if resource.type not in types:
            continue
        by_name = name is not None and resource.props.get("bucket") == name
        by_urn = bool(bucket.urn) and bucket.urn in resource.dependencies.get("bucket", ())
        if by_name or by_urn:
            found.append(resource)
    return found


def _buckets(resources: Sequence[Resource]) -> Iterator[Resource]:
    return (r for r in resources if r.type in BUCKET_TYPES)


def _each_bucket(
    resources: Sequence[Resource],
    types: frozenset[str],
    missing: str,
    judge: Callable[[Resource], list[str]],
) -> list[Finding]:
    findings = []
    for bucket in _buckets(resources):
        found = companions(bucket, resources, types)
        if not found:
            findings.append(Finding(bucket.urn, f"{_label(bucket)} {missing}"))
        for companion in found:
            findings.extend(Finding(companion.urn, f"{_label(bucket)}: {text}") for text in judge(companion))
    return findings


def _encryption_problems(config: Resource) -> list[str]:
    rules = as_list(config.props.get("rules"))
    if not rules:
        return [
            f"encryption configuration '{config.name}' has no rules; add one with sse_algorithm 'aws:kms' or 'AES256'"
        ]
    problems = []
    for rule in rules:
        algorithm = dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        if algorithm not in SSE_ALGORITHMS:
            problems.append(
                f"encryption configuration '{config.name}' uses sse_algorithm {algorithm!r}; "
                "set apply_server_side_encryption_by_default.sse_algorithm to 'aws:kms' or 'AES256'"
            )
    return problems


def check_encrypted(resources: Sequence[Resource], context: Context) -> list[Finding]:
    return _each_bucket(
        resources,
        ENCRYPTION_TYPES,
        "has no server-side encryption configuration; add an aws.s3.BucketServerSideEncryptionConfiguration "
        "for it with sse_algorithm 'aws:kms' or 'AES256'",
        _encryption_problems,
    )


def _versioning_problems(versioning: Resource) -> list[str]:
    status = dig(versioning.props, "versioningConfiguration", "status")
    if status == "Enabled":
        return []
    return [f"versioning '{versioning.name}' has status {status!r}; set versioning_configuration.status to 'Enabled'"]


def check_versioned(resources: Sequence[Resource], context: Context) -> list[Finding]:
    return _each_bucket(
        resources,
        VERSIONING_TYPES,
        "is not versioned; add an aws.s3.BucketVersioning for it with versioning_configuration.status 'Enabled'",
        _versioning_problems,
    )


def _public_access_problems(block: Resource) -> list[str]:
    off = [flag for flag in PUBLIC_ACCESS_FLAGS if block.props.get(flag) is not True]
    if not off:
        return []
    return [f"public access block '{block.name}' does not set {', '.join(off)}; set all four flags to true"]


def check_public_access_blocked(resources: Sequence[Resource], context: Context) -> list[Finding]:
    return _each_bucket(
        resources,
        PUBLIC_ACCESS_BLOCK_TYPES,
        "has no public access block; add an aws.s3.BucketPublicAccessBlock for it with "
        "block_public_acls, block_public_policy, ignore_public_acls and restrict_public_buckets true",
        _public_access_problems,
    )


def _is_everyone(principal: Any) -> bool:
    return principal == "*" or "*" in as_list(as_map(principal).get("AWS"))


def _denies_plain_http(statement: Any, bucket: str) -> bool:
    """A Deny for everyone, on every S3 action, on the bucket and all its objects, when not over TLS."""
    s = as_map(statement)
    if s.get("Effect") != "Deny" or not _is_everyone(s.get("Principal")):
        return False
    if not {"s3:*", "*"} & {str(a) for a in as_list(s.get("Action"))}:
        return False
    bool_condition = {str(k).lower(): v for k, v in as_map(as_map(s.get("Condition")).get("Bool")).items()}
    if str(bool_condition.get("aws:securetransport")).lower() != "false":
        return False
    # Any partition (aws, aws-cn, aws-us-gov): the ARN's resource part is what must match.
    parts = {str(r).split(":::", 1)[-1] for r in as_list(s.get("Resource")) if str(r).startswith("arn:")}
    return {bucket, f"{bucket}/*"} <= parts


def _tls_problems(bucket: Resource) -> Callable[[Resource], list[str]]:
    def judge(policy: Resource) -> list[str]:
        document = policy_document(policy.props.get("policy"))
        name = bucket_name(bucket) or bucket.name
        if document is not None and any(_denies_plain_http(s, name) for s in statements(document)):
            return []
        return [
            f"bucket policy '{policy.name}' does not deny plain-HTTP requests; add a statement Effect Deny, "
            f"Principal '*', Action 's3:*', Resource [arn:aws:s3:::{name}, arn:aws:s3:::{name}/*], "
            "Condition Bool aws:SecureTransport 'false'"
        ]

    return judge


def check_tls_only(resources: Sequence[Resource], context: Context) -> list[Finding]:
    findings = []
    for bucket in _buckets(resources):
        findings.extend(
            _each_bucket(
                [bucket, *(r for r in resources if r.type not in BUCKET_TYPES)],
                POLICY_TYPES,
                "has no bucket policy; add an aws.s3.BucketPolicy denying requests without TLS "
                "(Effect Deny, Action 's3:*', Condition Bool aws:SecureTransport 'false')",
                _tls_problems(bucket),
            )
        )
    return findings
