"""The platform's object store, in two variants with the same outputs.

``minio`` (minio.py) installs charts/minio in-cluster; ``s3`` (s3.py) creates S3 buckets with
pulumi-aws. Both expose ``endpoint``, ``buckets`` (bucket key -> name) and ``credentials_secrets``
(consumer -> Secret name; empty on S3, where workloads use their IAM role), so consumers never
branch on the kind.
"""

from __future__ import annotations

from infra.config import Buckets

# Bucket keys as they appear in the ``buckets`` output.
BUCKET_KEYS: tuple[str, ...] = ("data_lake", "mlflow_artifacts")
# Pods carrying this label are admitted to the in-cluster store by its NetworkPolicy.
CLIENT_LABEL = {"qframe.io/object-store-client": "true"}


def bucket_names(buckets: Buckets) -> dict[str, str]:
    return {key: getattr(buckets, key) for key in BUCKET_KEYS}


def consumer_secret_name(consumer: str) -> str:
    return f"object-store-{consumer}"
