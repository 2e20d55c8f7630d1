"""Round trips against the real service fixtures, and proof that a fixture that cannot start says why.

Every round trip depends on behaviour a fake would not have: transactions and MVCC in PostgreSQL,
key partitioning and consumer groups in Kafka, the S3 wire protocol through two different clients,
and MLflow artifacts travelling through the tracking server to its artifact store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools import services

pytestmark = pytest.mark.services


# --- helpers: which TCP sockets a service's process group is listening on ------------------------


def _process_group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after "(comm)": state ppid pgrp ...
        fields = stat_line.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _decode_address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # /proc/net/tcp6 prints the address as four host-order (little-endian) 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def listening_sockets(pgid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by the process group."""
    inodes = set().union(*(_socket_inodes(pid) for pid in _process_group_members(pgid)))
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            columns = row.split()
            local, state, inode = columns[1], columns[3], columns[9]
            if state == "0A" and inode in inodes:  # 0A == TCP_LISTEN
                address, port = local.split(":")
                found.add((_decode_address(address), int(port, 16)))
    return found


@pytest.mark.parametrize("fixture_name", ["postgres", "kafka", "s3", "mlflow_server"])
def test_service_listens_only_on_loopback(fixture_name: str, request: pytest.FixtureRequest) -> None:
    service = request.getfixturevalue(fixture_name)
    expected_ports = {service.port}
    if isinstance(service, services.KafkaService):
        expected_ports.add(service.controller_port)
    sockets = listening_sockets(service.pid)
    assert {port for _, port in sockets} == expected_ports, sockets
    assert {address for address, _ in sockets} == {"127.0.0.1"}, sockets
    assert service.host == "127.0.0.1"
    assert service.started_in_s > 0


# --- PostgreSQL ----------------------------------------------------------------------------------


def test_postgres_transactions_round_trip_via_sqlalchemy(postgres: services.PostgresService) -> None:
    import sqlalchemy as sa  # noqa: PLC0415

    engine = sa.create_engine(postgres.url)
    table = f"fills_{uuid.uuid4().hex[:8]}"
    count = sa.text(f"SELECT count(*) FROM {table}")  # noqa: S608 - generated identifier
    insert = sa.text(f"INSERT INTO {table} (symbol, qty) VALUES (:symbol, :qty)")  # noqa: S608
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"CREATE TABLE {table} (id serial PRIMARY KEY, symbol text NOT NULL, qty int NOT NULL)")
            )

        with engine.connect() as conn:
            transaction = conn.begin()
            conn.execute(insert, [{"symbol": "ES", "qty": 3}, {"symbol": "NQ", "qty": -2}])
            assert conn.execute(count).scalar_one() == 2  # visible inside its own transaction
            with engine.connect() as other:  # ...and invisible to another session until commit
                assert other.execute(count).scalar_one() == 0
            transaction.rollback()

        with engine.connect() as conn:
            assert conn.execute(count).scalar_one() == 0  # the rollback really undid the inserts

        with engine.begin() as conn:
            conn.execute(insert, [{"symbol": "ZN", "qty": 5}, {"symbol": "CL", "qty": 1}])
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT symbol, qty FROM {table} ORDER BY id")).all()  # noqa: S608
            assert [tuple(row) for row in rows] == [("ZN", 5), ("CL", 1)]
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == postgres.dbname
            assert int(conn.execute(sa.text("SHOW server_version_num")).scalar_one()) >= 150000
    finally:
        engine.dispose()


def test_postgres_enforces_scram_password_auth(postgres: services.PostgresService) -> None:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=postgres.host, port=postgres.port, user=postgres.user, password="wrong", dbname=postgres.dbname
        )
    assert postgres.password not in repr(postgres)


# --- Kafka ---------------------------------------------------------------------------------------


def test_kafka_topic_produce_consume_with_a_group(kafka: services.KafkaService) -> None:
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: PLC0415
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415
    from confluent_kafka.cimpl import NewTopic  # noqa: PLC0415 - the class confluent_kafka.admin re-exports

    topic = f"ticks-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=30)
    assert len(admin.list_topics(topic=topic, timeout=10).topics[topic].partitions) == 3

    count = 300
    keys = [f"instrument-{n}" for n in range(12)]
    sent = [(keys[i % len(keys)], json.dumps({"seq": i, "px": 100 + i / 4})) for i in range(count)]
    delivered: list[tuple[str, int]] = []
    errors: list[Any] = []

    def on_delivery(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(error)
        else:
            delivered.append((message.key().decode(), message.partition()))

    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "acks": "all", "enable.idempotence": True})
    for key, value in sent:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert errors == []
    assert len(delivered) == count
    partition_of_key: dict[str, set[int]] = defaultdict(set)
    for key, partition in delivered:
        partition_of_key[key].add(partition)
    assert all(len(parts) == 1 for parts in partition_of_key.values())  # a key sticks to one partition
    assert set().union(*partition_of_key.values()) == {0, 1, 2}  # and the keys spread over all three

    group = f"readers-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received: list[tuple[str, str, int]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(received) < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                continue
            raw_key, raw_value, partition_id = message.key(), message.value(), message.partition()
            assert raw_key is not None
            assert raw_value is not None
            assert partition_id is not None
            received.append((raw_key.decode(), raw_value.decode(), partition_id))
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    finally:
        consumer.close()

    assert len(received) == count
    assert sorted((key, value) for key, value, _ in received) == sorted(sent)
    for key in keys:  # per key, order survives the trip (one partition, one consumer)
        sequence = [json.loads(value)["seq"] for k, value, _ in received if k == key]
        assert sequence == sorted(sequence)
        assert {p for k, _, p in received if k == key} == partition_of_key[key]
    assert sum(tp.offset for tp in committed) == count  # the group's committed offsets cover everything


# --- S3 API --------------------------------------------------------------------------------------


def test_s3_round_trip_with_boto3_and_s3fs(s3: services.S3Service) -> None:
    import boto3  # noqa: PLC0415
    import botocore.exceptions  # noqa: PLC0415
    import s3fs  # noqa: PLC0415

    bucket = f"research-{uuid.uuid4().hex[:8]}"
    payload = b"date,close\n2025-01-02,101.5\n2025-01-03,99.25\n"
    client = boto3.client("s3", **s3.boto3_kwargs())
    client.create_bucket(Bucket=bucket)
    put = client.put_object(Bucket=bucket, Key="prices/es.csv", Body=payload)
    assert put["ETag"].strip('"') == hashlib.md5(payload).hexdigest()  # noqa: S324 - S3's ETag is MD5
    assert client.get_object(Bucket=bucket, Key="prices/es.csv")["Body"].read() == payload
    listed = client.list_objects_v2(Bucket=bucket, Prefix="prices/")
    assert [item["Key"] for item in listed["Contents"]] == ["prices/es.csv"]
    assert bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]
    with pytest.raises(botocore.exceptions.ClientError, match="NoSuchKey"):
        client.get_object(Bucket=bucket, Key="prices/missing.csv")

    fs = s3fs.S3FileSystem(**s3.s3fs_kwargs(), skip_instance_cache=True, use_listings_cache=False)
    assert fs.cat(f"{bucket}/prices/es.csv") == payload
    with fs.open(f"{bucket}/prices/nq.csv", "wb") as handle:
        handle.write(b"written by s3fs")
    assert client.get_object(Bucket=bucket, Key="prices/nq.csv")["Body"].read() == b"written by s3fs"
    assert sorted(fs.ls(f"{bucket}/prices")) == [f"{bucket}/prices/es.csv", f"{bucket}/prices/nq.csv"]


# --- MLflow tracking server ----------------------------------------------------------------------


def test_mlflow_server_tracks_params_metrics_and_artifacts(
    mlflow_server: services.MlflowService, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    client = MlflowClient(tracking_uri=mlflow_server.tracking_uri)
    experiment_id = client.create_experiment(f"fixture-check-{uuid.uuid4().hex[:8]}")
    experiment = client.get_experiment(experiment_id)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # artifacts go via the server

    run_id = client.create_run(experiment_id).info.run_id
    client.log_param(run_id, "lookback_days", "20")
    client.log_metric(run_id, "sharpe", 1.25, step=0)
    client.log_metric(run_id, "sharpe", 1.5, step=1)
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"sharpe": 1.5, "trades": 42}))
    client.log_artifact(run_id, str(report), artifact_path="reports")
    client.set_terminated(run_id)

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lookback_days": "20"}
    assert run.data.metrics == {"sharpe": 1.5}
    assert [m.value for m in client.get_metric_history(run_id, "sharpe")] == [1.25, 1.5]
    assert [a.path for a in client.list_artifacts(run_id, "reports")] == ["reports/report.json"]

    downloaded = client.download_artifacts(run_id, "reports/report.json", dst_path=str(tmp_path / "dl"))
    assert Path(downloaded).read_bytes() == report.read_bytes()
    stored = list(mlflow_server.artifacts_dir.rglob("report.json"))  # landed in the server's store
    assert len(stored) == 1
    assert stored[0].read_bytes() == report.read_bytes()


# --- a fixture that cannot start fails loudly ----------------------------------------------------


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A temp dir the 'postgres' account can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="qframe-fake-tools-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
    return path


def _assert_no_process_inside(directory: Path) -> None:
    """No process (but this one) runs from, or names, anything under ``directory``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        assert str(directory) not in f"{cwd} {cmdline}", f"left running: pid {entry.name}: {cmdline}"


def test_postgres_without_binaries_names_the_fix(tmp_path: Path) -> None:
    with (
        pytest.raises(services.ServiceStartError) as failure,
        services.postgres_server(bin_dir=tmp_path / "no-such-bin"),
    ):
        pytest.fail("must not start")
    message = str(failure.value)
    assert message.startswith("PostgreSQL failed to start")
    assert str(tmp_path / "no-such-bin" / "initdb") in message
    assert "run tools/install postgres" in message
    assert failure.value.service == "PostgreSQL"


def test_postgres_failing_initdb_reports_exit_code_and_log(world_readable_dir: Path) -> None:
    bin_dir = world_readable_dir / "bin"
    bin_dir.mkdir(mode=0o755)
    _script(bin_dir / "initdb", 'echo "initdb: simulated disk failure" >&2\nexit 3')
    _script(bin_dir / "postgres", "exit 1")
    work = world_readable_dir / "work"
    work.mkdir(mode=0o755)
    with (
        pytest.raises(services.ServiceStartError) as failure,
        services.postgres_server(bin_dir=bin_dir, workdir_parent=work),
    ):
        pytest.fail("must not start")
    message = str(failure.value)
    assert "PostgreSQL failed to start: set-up command failed" in message
    assert f"command: {bin_dir / 'initdb'} --pgdata" in message
    assert "exit code: 3" in message
    assert "initdb: simulated disk failure" in message
    assert "run tools/install postgres" in message
    assert list(work.iterdir()) == []  # its temp dir is gone


def test_kafka_without_jars_names_the_fix(tmp_path: Path) -> None:
    with (
        pytest.raises(services.ServiceStartError) as failure,
        services.kafka_server(kafka_lib=tmp_path / "missing"),
    ):
        pytest.fail("must not start")
    message = str(failure.value)
    assert message.startswith("Kafka failed to start")
    assert str(tmp_path / "missing") in message
    assert "run tools/install kafka" in message


def test_kafka_with_broken_jars_reports_the_java_failure(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "kafka_2.13-0.0.0.jar").write_bytes(b"not a jar")
    work = tmp_path / "work"
    work.mkdir()
    with (
        pytest.raises(services.ServiceStartError) as failure,
        services.kafka_server(kafka_lib=lib, workdir_parent=work),
    ):
        pytest.fail("must not start")
    message = str(failure.value)
    assert "Kafka failed to start: set-up command failed" in message
    assert "kafka.tools.StorageTool format" in message
    assert "exit code: 1" in message
    assert "kafka.tools.StorageTool" in failure.value.log_tail  # java's own complaint is shown
    assert "run tools/install kafka" in message
    assert list(work.iterdir()) == []


def test_server_exiting_during_startup_reports_exit_code_and_log(tmp_path: Path) -> None:
    fake_python = _script(tmp_path / "python", 'echo "No module named moto (simulated)" >&2\nexit 4')
    work = tmp_path / "work"
    work.mkdir()
    with (
        pytest.raises(services.ServiceStartError) as failure,
        services.s3_server(python=str(fake_python), workdir_parent=work),
    ):
        pytest.fail("must not start")
    message = str(failure.value)
    assert message.startswith("S3 API (moto server) failed to start: process exited during start-up")
    assert f"command: {fake_python} -m moto.server -H 127.0.0.1" in message
    assert "exit code: 4" in message
    assert "No module named moto (simulated)" in message
    assert "fix: " in message
    assert list(work.iterdir()) == []


def test_startup_timeout_stops_the_process_and_removes_its_dir(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with (
        pytest.raises(services.ServiceStartError) as failure,
        services.s3_server(startup_timeout_s=0.2, workdir_parent=work),
    ):
        pytest.fail("must not start")
    message = str(failure.value)
    assert "S3 API (moto server) failed to start: not ready after 0.2 s" in message
    assert f"command: {sys.executable} -m moto.server" in message
    assert list(work.iterdir()) == []
    _assert_no_process_inside(work)


def test_unexecutable_command_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "no-python"
    with (
        pytest.raises(services.ServiceStartError, match="MLflow tracking server failed to start: could not execute"),
        services.mlflow_server(python=str(missing), workdir_parent=tmp_path),
    ):
        pytest.fail("must not start")
