"""What a client needs to reach an S3 API server, shared by the moto and MinIO services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class S3Endpoint:
    host: str
    port: int
    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)

    def boto3_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client("s3", **kwargs)``."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }

    def s3fs_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem(**kwargs)`` (also fsspec ``storage_options``)."""
        return {
            "key": self.access_key_id,
            "secret": self.secret_access_key,
            "endpoint_url": self.endpoint_url,
            "client_kwargs": {"region_name": self.region},
        }
