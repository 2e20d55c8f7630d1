"""Session-scoped real services for the services tier; each starts only when a test asks for it.

A pytest plugin (registered in tests/conftest.py), so every test directory shares one instance:

    def test_something(postgres, kafka, s3, minio, mlflow_server): ...

``postgres`` is a PostgresService (url, dsn, host, port, user, password, dbname), ``kafka`` a
KafkaService (bootstrap_servers), ``s3`` an S3Service (endpoint_url, region, keys, boto3_kwargs(),
s3fs_kwargs()), ``minio`` a MinioService (a real MinIO server, root keys, boto3_kwargs()) and
``mlflow_server`` an MlflowService (tracking_uri); they come from the ``tools.services`` package.
A service that cannot start fails the test with the reason; nothing is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tools import services

# Seconds from "start" to "answers" per service, kept on the session's config and shown at the end.
STARTUP_TIMES = pytest.StashKey[dict[str, float]]()


def pytest_configure(config: pytest.Config) -> None:
    # The MLflow client in this process must not try to reach its telemetry endpoint.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    config.stash[STARTUP_TIMES] = {}


@pytest.fixture(scope="session")
def postgres(pytestconfig: pytest.Config) -> Iterator[services.PostgresService]:
    with services.postgres_server() as service:
        pytestconfig.stash[STARTUP_TIMES]["postgres"] = service.started_in_s
        yield service


@pytest.fixture(scope="session")
def kafka(pytestconfig: pytest.Config) -> Iterator[services.KafkaService]:
    with services.kafka_server() as service:
        pytestconfig.stash[STARTUP_TIMES]["kafka"] = service.started_in_s
        yield service


@pytest.fixture(scope="session")
def s3(pytestconfig: pytest.Config) -> Iterator[services.S3Service]:
    with services.s3_server() as service:
        pytestconfig.stash[STARTUP_TIMES]["s3"] = service.started_in_s
        yield service


@pytest.fixture(scope="session")
def minio(pytestconfig: pytest.Config) -> Iterator[services.MinioService]:
    with services.minio_server() as service:
        pytestconfig.stash[STARTUP_TIMES]["minio"] = service.started_in_s
        yield service


@pytest.fixture(scope="session")
def mlflow_server(pytestconfig: pytest.Config) -> Iterator[services.MlflowService]:
    with services.mlflow_server() as service:
        pytestconfig.stash[STARTUP_TIMES]["mlflow_server"] = service.started_in_s
        yield service


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    startup_times = terminalreporter.config.stash.get(STARTUP_TIMES, {})
    if startup_times:
        figures = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in startup_times.items())
        terminalreporter.write_line(f"service start-up times: {figures}")
