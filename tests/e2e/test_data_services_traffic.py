"""Real traffic through the data services on the real node, from pods inside the cluster.

The stack is up (tests/e2e/conftest.py); this file runs before test_pulumi_up.py's destroy (file
order). A client pod made from the tools image carries the labels the charts' NetworkPolicies
admit and the consumers' Secrets as environment, exactly as a workload of the platform would; a
second pod without the labels shows the policies are enforced, not just rendered (kube-router's
firewall controller enforces them on the node; see tools/devstack/node).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from infra.components.kafka import CLIENT_LABEL as KAFKA_CLIENT
from infra.components.kafka import secret_name as kafka_secret
from infra.components.object_store import CLIENT_LABEL as OBJECT_STORE_CLIENT
from infra.components.object_store import consumer_secret_name as object_store_secret
from infra.components.postgres import CLIENT_LABEL as POSTGRES_CLIENT
from infra.components.postgres import consumer_secret_name as postgres_secret
from tests.e2e.conftest import DevStack
from tests.e2e.in_cluster import CONNECT_TIMEOUT_S, idle_pod, last_json, run_in, running_pods, secret_env, stack_image

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CLIENT_LABELS = {**OBJECT_STORE_CLIENT, **POSTGRES_CLIENT, **KAFKA_CLIENT}
# The consumer whose credentials the client uses, and one whose resources it must not reach.
OWN, OTHER_BUCKET_OWNER, OTHER_DATABASE_OWNER = "research", "mlflow", "mlflow"
POSTGRES_CONSUMER = "catalog"


def client_pod(name: str, image: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """An idle pod with the consumers' Secrets as environment, labelled as ``labels`` say."""
    env = [
        secret_env("S3_ENDPOINT", object_store_secret(OWN), "endpoint"),
        secret_env("S3_ACCESS_KEY", object_store_secret(OWN), "access-key"),
        secret_env("S3_SECRET_KEY", object_store_secret(OWN), "secret-key"),
        secret_env("S3_OWN_BUCKET", object_store_secret(OWN), "bucket-data-lake"),
        secret_env("S3_OTHER_BUCKET", object_store_secret(OTHER_BUCKET_OWNER), "bucket-mlflow-artifacts"),
        secret_env("PG_URI", postgres_secret(POSTGRES_CONSUMER), "uri"),
        secret_env("PG_USER", postgres_secret(POSTGRES_CONSUMER), "username"),
        secret_env("PG_DATABASE", postgres_secret(POSTGRES_CONSUMER), "database"),
        secret_env("PG_OTHER_DATABASE", postgres_secret(OTHER_DATABASE_OWNER), "database"),
        secret_env("KAFKA_SERVERS", kafka_secret("research"), "bootstrap-servers"),
        secret_env("KAFKA_MECHANISM", kafka_secret("research"), "sasl-mechanism"),
        secret_env("KAFKA_WRITER", kafka_secret("ingestion"), "username"),
        secret_env("KAFKA_WRITER_PASSWORD", kafka_secret("ingestion"), "password"),
        secret_env("KAFKA_READER", kafka_secret("research"), "username"),
        secret_env("KAFKA_READER_PASSWORD", kafka_secret("research"), "password"),
    ]
    return idle_pod(
        name, image, labels, env, requests={"cpu": "50m", "memory": "128Mi"}, limits={"cpu": "500m", "memory": "256Mi"}
    )


@pytest.fixture(scope="module")
def pods(devstack: DevStack) -> Iterator[dict[str, str]]:
    image = stack_image("tools")
    names = {"client": "e2e-client", "stranger": "e2e-stranger"}
    manifests = [client_pod(names["client"], image, CLIENT_LABELS), client_pod(names["stranger"], image, {})]
    with running_pods(devstack, manifests, timeout_s=180):
        yield names


OBJECT_STORE_SCRIPT = """
    import json, os, uuid
    import boto3
    from botocore.exceptions import ClientError
    s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], aws_access_key_id=os.environ["S3_ACCESS_KEY"],
                      aws_secret_access_key=os.environ["S3_SECRET_KEY"], region_name="us-east-1")
    key, body = f"e2e/{uuid.uuid4()}.txt", uuid.uuid4().bytes
    s3.put_object(Bucket=os.environ["S3_OWN_BUCKET"], Key=key, Body=body)
    read = s3.get_object(Bucket=os.environ["S3_OWN_BUCKET"], Key=key)["Body"].read()
    s3.delete_object(Bucket=os.environ["S3_OWN_BUCKET"], Key=key)
    try:
        s3.put_object(Bucket=os.environ["S3_OTHER_BUCKET"], Key=key, Body=body)
        other = "allowed"
    except ClientError as exc:
        other = exc.response["Error"]["Code"]
    print(json.dumps({"round_trip": read == body, "other_bucket": other}))
"""


def test_object_store_consumer_reads_its_bucket_and_is_denied_another(devstack: DevStack, pods: dict[str, str]) -> None:
    result = last_json(run_in(devstack, pods["client"], OBJECT_STORE_SCRIPT))
    assert result == {"round_trip": True, "other_bucket": "AccessDenied"}


POSTGRES_SCRIPT = """
    import json, os
    import psycopg
    with psycopg.connect(os.environ["PG_URI"], connect_timeout=10) as conn:
        user, database = conn.execute("select current_user, current_database()").fetchone()
        conn.execute("create table if not exists e2e_probe (id int primary key)")
        conn.execute("insert into e2e_probe values (1) on conflict do nothing")
        rows = conn.execute("select count(*) from e2e_probe").fetchone()[0]
        conn.execute("drop table e2e_probe")
    other = psycopg.conninfo.conninfo_to_dict(os.environ["PG_URI"])
    other["dbname"] = os.environ["PG_OTHER_DATABASE"]
    try:
        psycopg.connect(**other, connect_timeout=10).close()
        denied = ""
    except psycopg.OperationalError as exc:
        denied = str(exc)
    print(json.dumps({"as_own_login": [user, database] == [os.environ["PG_USER"], os.environ["PG_DATABASE"]],
                      "rows": rows, "other_database_error": denied}))
"""


def test_postgres_consumer_logs_in_to_its_database_and_is_denied_another(
    devstack: DevStack, pods: dict[str, str]
) -> None:
    result = last_json(run_in(devstack, pods["client"], POSTGRES_SCRIPT))
    assert result["rows"] == 1
    assert result["as_own_login"], result
    denied = result["other_database_error"]
    assert denied, f"consumer {POSTGRES_CONSUMER} could connect to another consumer's database"
    assert "permission denied" in denied or "no pg_hba.conf entry" in denied, denied


KAFKA_SCRIPT = """
    import json, os, uuid
    from confluent_kafka import Consumer, KafkaException, Producer
    from confluent_kafka.admin import AdminClient
    servers, topic, marker = os.environ["KAFKA_SERVERS"], "market-data.1m", str(uuid.uuid4())

    def login(user, password):
        return {"bootstrap.servers": servers, "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": os.environ["KAFKA_MECHANISM"], "sasl.username": os.environ[user],
                "sasl.password": os.environ[password]}

    def produce(config):
        producer = Producer({**config, "acks": "all", "enable.idempotence": True, "message.timeout.ms": 20000})
        delivered = []
        producer.produce(topic, key=b"e2e", value=marker.encode(), on_delivery=lambda err, msg: delivered.append(err))
        try:
            producer.flush(30)
        except (KafkaException, SystemError) as exc:  # a fatal error may surface from inside the callback
            cause = exc if isinstance(exc, KafkaException) else exc.__cause__
            return cause.args[0].name() if isinstance(cause, KafkaException) else repr(exc)
        return "delivered" if delivered == [None] else (delivered[0].name() if delivered else "queued")

    def anonymous():
        admin = AdminClient({"bootstrap.servers": servers})
        try:
            admin.list_topics(timeout=8)
            return "answered"
        except KafkaException as exc:
            return exc.args[0].name()

    writer = produce(login("KAFKA_WRITER", "KAFKA_WRITER_PASSWORD"))
    reader_writing = produce(login("KAFKA_READER", "KAFKA_READER_PASSWORD"))
    consumer = Consumer({**login("KAFKA_READER", "KAFKA_READER_PASSWORD"), "group.id": "research.e2e-" + marker,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen = False
    for _ in range(60):
        message = consumer.poll(1.0)
        if message is not None and message.error() is None and message.value() == marker.encode():
            seen = True
            break
    consumer.close()
    print(json.dumps({"writer": writer, "consumed": seen, "reader_writing": reader_writing,
                      "anonymous": anonymous()}))
"""


def test_kafka_consumers_authenticate_and_anonymous_clients_are_refused(
    devstack: DevStack, pods: dict[str, str]
) -> None:
    """ingestion writes and research reads with their own logins; research may not write, and a client
    the NetworkPolicy admits but that sends no login gets nothing from the brokers."""
    result = last_json(run_in(devstack, pods["client"], KAFKA_SCRIPT))
    assert result["writer"] == "delivered", result
    assert result["consumed"] is True, result
    assert result["reader_writing"] in {"CLUSTER_AUTHORIZATION_FAILED", "TOPIC_AUTHORIZATION_FAILED"}, result
    # The SASL listener drops a client that speaks plain Kafka: no metadata, a transport failure.
    assert result["anonymous"] in {"_TRANSPORT", "_TIMED_OUT", "_ALL_BROKERS_DOWN"}, result


CONNECT_SCRIPT = f"""
    import json, socket
    TIMEOUT = {CONNECT_TIMEOUT_S}
    results = {{}}
    for host, port in [("minio.qframe.svc", 9000), ("postgres.qframe.svc", 5432), ("kafka.qframe.svc", 9092)]:
        try:
            socket.create_connection((host, port), timeout=TIMEOUT).close()
            results[host] = "connected"
        except socket.timeout:
            results[host] = "timeout"
        except OSError as exc:
            results[host] = type(exc).__name__ + ": " + str(exc)
    print(json.dumps(results))
"""


def test_network_policies_refuse_a_pod_without_the_client_labels(devstack: DevStack, pods: dict[str, str]) -> None:
    admitted = last_json(run_in(devstack, pods["client"], CONNECT_SCRIPT))
    refused = last_json(run_in(devstack, pods["stranger"], CONNECT_SCRIPT))
    assert set(admitted.values()) == {"connected"}, admitted
    # Refused by policy, not by a missing server (the admitted client just connected): kube-router,
    # the enforcer, REJECTs (ICMP port unreachable) where other CNIs drop (timeout).
    assert all(v == "timeout" or v.startswith("ConnectionRefusedError") for v in refused.values()), refused
