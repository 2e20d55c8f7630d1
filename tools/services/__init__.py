"""Real PostgreSQL, Kafka, S3 API, MinIO and MLflow processes on 127.0.0.1, one module per service.

The services test tier (through the fixtures in tests/harness/fixtures.py) and the data benchmark
start them. Each ``*_server()`` context manager starts one real process in its own temp dir on a
free loopback port, waits until the service really answers (a login and query, a metadata request,
an S3 call, ``GET /health``), yields a frozen dataclass of connection details and, on exit or on
any error, stops the whole process group and removes the temp dir.

A service that cannot start raises :class:`ServiceStartError`, whose message names the service, the
command, the exit code or the timeout, the tail of the process log and what to do about it. Nothing
here skips a test.

Tools come from the repo's ``.tools`` dir (``tools/install postgres kafka minio`` fills it); every
context manager takes an override so callers can point it somewhere else. Importing this package
starts nothing.
"""

from __future__ import annotations

from tools.services._net import free_port
from tools.services.errors import ServiceStartError
from tools.services.kafka import KafkaService, kafka_server
from tools.services.minio import MinioService, minio_server
from tools.services.mlflow import MlflowService, mlflow_server
from tools.services.moto_s3 import S3Service, s3_server
from tools.services.postgres import PostgresService, postgres_server

__all__ = [
    "KafkaService",
    "MinioService",
    "MlflowService",
    "PostgresService",
    "S3Service",
    "ServiceStartError",
    "free_port",
    "kafka_server",
    "minio_server",
    "mlflow_server",
    "postgres_server",
    "s3_server",
]
