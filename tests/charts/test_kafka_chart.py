"""Chart unit tests for charts/kafka with the real helm: "should render X when Y is set"."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from infra.components.kafka import build_values, kraft_cluster_id
from infra.config import PROJECT, parse_raw_config
from infra.images import image_ref
from infra.offline import load_stack_file
from infra.scope import Scope
from tests.harness import charts, security

pytestmark = pytest.mark.charts

CHART = charts.REPO_ROOT / "charts" / "kafka"
NAMESPACE = "qframe"
CLIENT = {"qframe.io/kafka-client": "true"}
BROKER = {
    "app.kubernetes.io/name": "kafka",
    "app.kubernetes.io/instance": "kafka",
    "app.kubernetes.io/component": "broker",
}
BOOTSTRAP_PODS = {
    "app.kubernetes.io/name": "kafka",
    "app.kubernetes.io/instance": "kafka",
    "app.kubernetes.io/component": "bootstrap-topics",
}
TOPICS = [
    {"name": "market-data.1m", "partitions": 3, "replicationFactor": 1, "retentionMs": 259200000},
    {"name": "market-data.1d", "partitions": 1, "retentionMs": -1},
]


def render(values: Mapping[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    return charts.render_by_name(CHART, values or {}, namespace=NAMESPACE, release="kafka")


def server_properties(objects: Mapping[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    text = objects["ConfigMap", "kafka-config"]["data"]["server.properties"]
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def voters(objects: Mapping[tuple[str, str], dict[str, Any]]) -> list[str]:
    return server_properties(objects)["controller.quorum.voters"].split(",")


def helm_fails_with(values: Mapping[str, Any], tmp_path: Path) -> str:
    return charts.rejection_message(CHART, values, tmp_path, release="kafka")


# ---------------------------------------------------------------------------------------------
# KRaft quorum
# ---------------------------------------------------------------------------------------------


def test_one_replica_has_one_voter_on_the_headless_service() -> None:
    objects = render()
    assert voters(objects) == ["0@kafka-0.kafka-headless.qframe.svc:9093"]
    assert server_properties(objects)["process.roles"] == "broker,controller"
    assert server_properties(objects)["default.replication.factor"] == "1"


def test_three_replicas_have_three_voters_and_replication_three() -> None:
    objects = render({"replicas": 3})
    assert voters(objects) == [f"{i}@kafka-{i}.kafka-headless.qframe.svc:9093" for i in range(3)]
    props = server_properties(objects)
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert objects["StatefulSet", "kafka"]["spec"]["replicas"] == 3
    assert ("PodDisruptionBudget", "kafka") in objects
    assert ("PodDisruptionBudget", "kafka") not in render()


def test_headless_service_publishes_not_ready_pods_and_backs_the_statefulset() -> None:
    objects = render()
    headless = objects["Service", "kafka-headless"]["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    assert objects["StatefulSet", "kafka"]["spec"]["serviceName"] == "kafka-headless"
    assert objects["StatefulSet", "kafka"]["spec"]["podManagementPolicy"] == "Parallel"
    client = objects["Service", "kafka"]["spec"]
    assert client["type"] == "ClusterIP"
    assert [p["port"] for p in client["ports"]] == [9092]
    assert client["selector"] == BROKER


def test_node_id_comes_from_the_ordinal_and_storage_is_formatted_idempotently() -> None:
    script = render()["ConfigMap", "kafka-config"]["data"]["start-kafka.sh"]
    assert 'ordinal="${POD_NAME##*-}"' in script
    assert 'echo "node.id=${ordinal}"' in script
    assert "kafka-storage.sh format" in script
    assert "--ignore-formatted" in script
    assert script.rstrip().endswith('exec /opt/kafka/bin/kafka-server-start.sh "$config"')


def test_storage_size_and_class_come_from_values() -> None:
    (claim,) = render({"persistence": {"size": "50Gi", "storageClassName": "fast"}})["StatefulSet", "kafka"]["spec"][
        "volumeClaimTemplates"
    ]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    (default_claim,) = render()["StatefulSet", "kafka"]["spec"]["volumeClaimTemplates"]
    assert "storageClassName" not in default_claim["spec"]


def test_cluster_id_from_values_is_kept_in_the_secret() -> None:
    secret = render({"clusterId": "q1Fr4meKafkaClusterIdA"})["Secret", "kafka-cluster-id"]
    assert base64.b64decode(secret["data"]["clusterId"]).decode() == "q1Fr4meKafkaClusterIdA"
    assert "annotations" not in secret["metadata"]
    generated = render()["Secret", "kafka-cluster-id"]
    assert len(base64.b64decode(generated["data"]["clusterId"])) == 22
    assert generated["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_broker_container_is_locked_down_with_probes_and_tmp_volume() -> None:
    sts = render()["StatefulSet", "kafka"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "qframe/kafka:0.1.0"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["tcpSocket"]["port"] == "client"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {
        "/var/lib/kafka/data",
        "/etc/kafka",
        "/tmp",
        "/etc/kafka-credentials",
    }
    assert security.violations(sts) == []


# ---------------------------------------------------------------------------------------------
# Authentication, ACLs, scheduling and probes
# ---------------------------------------------------------------------------------------------

USERS = [
    {"name": "ingestion", "existingSecret": "kafka-ingestion", "write": ["t1"], "read": [], "groupPrefix": ""},
    {"name": "research", "existingSecret": "kafka-research", "write": [], "read": ["t1"], "groupPrefix": "research"},
]


def test_every_listener_is_sasl_and_nothing_is_allowed_without_an_acl() -> None:
    props = server_properties(render())
    protocols = dict(pair.split(":") for pair in props["listener.security.protocol.map"].split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}
    listeners = [entry.split("://")[0] for entry in props["listeners"].split(",")]
    assert set(listeners) == set(protocols)
    assert props["inter.broker.listener.name"] == "CLIENT"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:broker;User:admin"
    script = render()["ConfigMap", "kafka-config"]["data"]["start-kafka.sh"]
    assert 'echo "advertised.listeners=CLIENT://' in script


def test_passwords_are_files_from_the_secrets_never_values_or_env() -> None:
    objects = render({"auth": {"users": USERS}})
    props = server_properties(objects)
    jaas = props["listener.name.client.scram-sha-512.sasl.jaas.config"]
    assert 'password="${secrets:/etc/kafka-credentials:broker-password}"' in jaas
    assert props["config.providers.secrets.class"].endswith("DirectoryConfigProvider")
    sts = objects["StatefulSet", "kafka"]["spec"]["template"]["spec"]
    (credentials,) = [v for v in sts["volumes"] if v["name"] == "credentials"]
    assert [s["secret"]["name"] for s in credentials["projected"]["sources"]] == ["kafka-broker", "kafka-admin"]
    job = objects["Job", "kafka-bootstrap-topics"]["spec"]["template"]["spec"]
    (job_credentials,) = [v for v in job["volumes"] if v["name"] == "credentials"]
    assert [
        (s["secret"]["name"], s["secret"]["items"][0]["path"]) for s in job_credentials["projected"]["sources"]
    ] == [
        ("kafka-admin", "admin-password"),
        ("kafka-ingestion", "users/ingestion"),
        ("kafka-research", "users/research"),
    ]
    for container in [*sts["containers"], *job["containers"]]:
        for env in container.get("env", []):
            assert "PASSWORD" not in env["name"].upper(), env
            assert env.get("valueFrom", {}).get("secretKeyRef", {}).get("key") != "password", env


def test_storage_format_adds_the_super_users_scram_credentials_from_the_files() -> None:
    script = render({"auth": {"mechanism": "SCRAM-SHA-256"}})["ConfigMap", "kafka-config"]["data"]["start-kafka.sh"]
    assert '--add-scram "${mechanism}=[name=broker,password=$(cat "$credentials/broker-password")]"' in script
    assert '--add-scram "${mechanism}=[name=admin,password=$(cat "$credentials/admin-password")]"' in script
    assert "mechanism=SCRAM-SHA-256" in script


def test_the_bootstrap_job_gets_the_users_and_logs_in_as_admin() -> None:
    objects = render({"auth": {"users": USERS}})
    auth = json.loads(objects["ConfigMap", "kafka-bootstrap-topics"]["data"]["auth.json"])
    assert auth == {
        "mechanism": "SCRAM-SHA-512",
        "users": [{k: v for k, v in u.items() if k != "existingSecret"} for u in USERS],
    }
    (container,) = objects["Job", "kafka-bootstrap-topics"]["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[command.index("--auth-json") + 1] == "/opt/bootstrap/auth.json"
    assert command[command.index("--admin-password-file") + 1] == "/etc/kafka-auth/admin-password"
    assert command[command.index("--user-passwords-dir") + 1] == "/etc/kafka-auth/users"


def test_schema_refuses_a_user_named_like_a_super_user_or_an_unknown_mechanism(tmp_path: Path) -> None:
    admin = [{**USERS[0], "name": "admin"}]
    assert "name" in helm_fails_with({"auth": {"users": admin}}, tmp_path)
    assert "mechanism" in helm_fails_with({"auth": {"mechanism": "PLAIN"}}, tmp_path)
    assert "groupPrefix" in helm_fails_with({"auth": {"users": [{**USERS[0], "groupPrefix": "a b"}]}}, tmp_path)


def test_tls_secret_makes_the_client_listener_sasl_ssl_with_pem_from_files() -> None:
    objects = render({"tls": {"existingSecret": "kafka-tls"}, "auth": {"users": USERS}})
    props = server_properties(objects)
    assert props["listener.security.protocol.map"] == "CLIENT:SASL_SSL,CONTROLLER:SASL_PLAINTEXT"
    assert props["listener.name.client.ssl.keystore.type"] == "PEM"
    assert props["listener.name.client.ssl.keystore.key"] == "${secrets:/etc/kafka-tls:tls.key}"
    assert props["listener.name.client.ssl.truststore.certificates"] == "${secrets:/etc/kafka-tls:ca.crt}"
    pod = objects["StatefulSet", "kafka"]["spec"]["template"]["spec"]
    (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert tls["secret"]["secretName"] == "kafka-tls"
    assert {i["key"] for i in tls["secret"]["items"]} == {"tls.crt", "tls.key", "ca.crt"}
    job = objects["Job", "kafka-bootstrap-topics"]["spec"]["template"]["spec"]
    command = job["containers"][0]["command"]
    assert command[command.index("--ca-file") + 1] == "/etc/kafka-auth/ca.crt"
    (credentials,) = [v for v in job["volumes"] if v["name"] == "credentials"]
    assert {"secret": {"name": "kafka-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}} in credentials[
        "projected"
    ]["sources"]  # the Job gets the CA, never the key
    assert security.violations(objects["StatefulSet", "kafka"]) == []


def test_without_a_tls_secret_nothing_tls_is_rendered() -> None:
    objects = render()
    assert not [k for k in server_properties(objects) if ".ssl." in k]
    pod = objects["StatefulSet", "kafka"]["spec"]["template"]["spec"]
    assert "tls" not in {v["name"] for v in pod["volumes"]}
    assert (
        "--ca-file"
        not in objects["Job", "kafka-bootstrap-topics"]["spec"]["template"]["spec"]["containers"][0]["command"]
    )


def _anti_affinity(values: Mapping[str, Any]) -> dict[str, Any] | None:
    spec = render(values)["StatefulSet", "kafka"]["spec"]["template"]["spec"]
    affinity: dict[str, Any] | None = spec.get("affinity", {}).get("podAntiAffinity")
    return affinity


def test_brokers_prefer_separate_nodes_by_default_and_can_require_them() -> None:
    preferred = _anti_affinity({"replicas": 3})
    assert preferred is not None
    (term,) = preferred["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"] == {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": BROKER},
    }
    required = _anti_affinity({"replicas": 3, "podAntiAffinity": "required"})
    assert required == {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": BROKER}}
        ]
    }
    assert _anti_affinity({"replicas": 3, "podAntiAffinity": "none"}) is None


def test_liveness_is_lenient_and_differs_from_readiness() -> None:
    (container,) = render()["StatefulSet", "kafka"]["spec"]["template"]["spec"]["containers"]
    ready, live = container["readinessProbe"], container["livenessProbe"]
    assert ready != live
    assert ready["tcpSocket"]["port"] == "client"
    assert live["tcpSocket"]["port"] == "controller"
    # Liveness tolerates far longer outages than readiness does before acting.
    assert live["periodSeconds"] * live["failureThreshold"] >= 10 * ready["periodSeconds"] * ready["failureThreshold"]


# ---------------------------------------------------------------------------------------------
# Topic bootstrap Job
# ---------------------------------------------------------------------------------------------


def test_topics_json_in_the_configmap_matches_values() -> None:
    objects = render({"replicas": 3, "topics": TOPICS})
    data = objects["ConfigMap", "kafka-bootstrap-topics"]["data"]
    assert json.loads(data["topics.json"]) == [
        TOPICS[0],
        {**TOPICS[1], "replicationFactor": 3},  # defaulted to min(3, replicas)
    ]
    script = (CHART / "files" / "bootstrap-topics.py").read_text(encoding="utf-8")
    assert data["bootstrap-topics.py"].strip() == script.strip()


def test_topics_json_keeps_large_retention_as_integers() -> None:
    topics = [{"name": "t", "partitions": 1, "retentionMs": 315360000000}]
    data = render({"topics": topics})["ConfigMap", "kafka-bootstrap-topics"]["data"]
    assert '"retentionMs":315360000000' in data["topics.json"]


def test_job_is_a_post_install_post_upgrade_hook_that_runs_the_script() -> None:
    job = render({"topics": TOPICS})["Job", "kafka-bootstrap-topics"]
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert job["spec"]["backoffLimit"] == 6
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "qframe/tools:0.1.0"
    assert container["command"][:2] == ["python3", "/opt/bootstrap/bootstrap-topics.py"]
    assert container["command"][2:6] == [
        "--bootstrap-servers",
        "kafka.qframe.svc:9092",
        "--topics-json",
        "/opt/bootstrap/topics.json",
    ]
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "bootstrap-topics"


def test_job_rolls_its_checksum_when_topics_change() -> None:
    def checksum(values: Mapping[str, Any]) -> str:
        job = render(values)["Job", "kafka-bootstrap-topics"]
        return str(job["spec"]["template"]["metadata"]["annotations"]["checksum/topics"])

    assert checksum({"topics": TOPICS}) != checksum({"topics": TOPICS[:1]})


def test_job_and_its_configmap_are_omitted_when_disabled() -> None:
    objects = render({"initJob": {"enabled": False}})
    assert ("Job", "kafka-bootstrap-topics") not in objects
    assert ("ConfigMap", "kafka-bootstrap-topics") not in objects
    assert ("NetworkPolicy", "kafka-bootstrap-topics") not in objects


# ---------------------------------------------------------------------------------------------
# NetworkPolicy
# ---------------------------------------------------------------------------------------------


def _client_rule(policy: Mapping[str, Any]) -> Mapping[str, Any]:
    rules: list[dict[str, Any]] = [r for r in policy["spec"]["ingress"] if [p["port"] for p in r["ports"]] == [9092]]
    assert len(rules) == 1, rules
    return rules[0]


def test_network_policy_admits_exactly_the_configured_clients_on_9092() -> None:
    clients = [
        {"podSelector": {"matchLabels": CLIENT}},
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingest"}}},
    ]
    policy = render({"networkPolicy": {"allowedClients": clients}})["NetworkPolicy", "kafka-brokers"]
    assert policy["spec"]["podSelector"] == {"matchLabels": BROKER}
    rule = _client_rule(policy)
    assert rule["from"] == [
        {"podSelector": {"matchLabels": CLIENT}},
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingest"}}},
        {"podSelector": {"matchLabels": BOOTSTRAP_PODS}},  # the chart's own Job
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9092}]


def test_network_policy_default_client_is_the_kafka_client_label() -> None:
    policy = render()["NetworkPolicy", "kafka-brokers"]
    assert _client_rule(policy)["from"][0] == {"podSelector": {"matchLabels": CLIENT}}


def test_brokers_reach_each_other_on_9092_and_9093_and_egress_only_to_brokers_and_dns() -> None:
    spec = render()["NetworkPolicy", "kafka-brokers"]["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (peers,) = [r for r in spec["ingress"] if len(r["ports"]) == 2]
    assert peers["from"] == [{"podSelector": {"matchLabels": BROKER}}]
    assert [p["port"] for p in peers["ports"]] == [9092, 9093]
    brokers, dns = spec["egress"]
    assert brokers["to"] == [{"podSelector": {"matchLabels": BROKER}}]
    assert [p["port"] for p in brokers["ports"]] == [9092, 9093]
    assert {p["port"] for p in dns["ports"]} == {53}


def test_no_clients_and_no_job_leaves_only_the_broker_peer_rule() -> None:
    spec = render({"networkPolicy": {"allowedClients": []}, "initJob": {"enabled": False}})[
        "NetworkPolicy", "kafka-brokers"
    ]["spec"]
    assert len(spec["ingress"]) == 1


def test_default_deny_can_be_left_to_the_namespace_baseline() -> None:
    assert ("NetworkPolicy", "kafka-default-deny") in render()
    assert ("NetworkPolicy", "kafka-default-deny") not in render({"networkPolicy": {"defaultDeny": False}})


# ---------------------------------------------------------------------------------------------
# values.schema.json
# ---------------------------------------------------------------------------------------------


def test_schema_rejects_an_unknown_nested_key(tmp_path: Path) -> None:
    stderr = helm_fails_with({"initJob": {"retries": 3}}, tmp_path)
    assert "retries" in stderr


def test_schema_rejects_an_unknown_topic_key(tmp_path: Path) -> None:
    stderr = helm_fails_with({"topics": [{"name": "t", "partitions": 1, "retentionMs": -1, "retention": 5}]}, tmp_path)
    assert "retention" in stderr


def test_schema_rejects_a_wrong_type(tmp_path: Path) -> None:
    stderr = helm_fails_with({"replicas": "three"}, tmp_path)
    assert "replicas" in stderr


def test_schema_rejects_an_even_replica_count_and_the_latest_tag(tmp_path: Path) -> None:
    assert "replicas" in helm_fails_with({"replicas": 2}, tmp_path)
    assert "tag" in helm_fails_with(
        {"image": {"repository": "qframe/kafka", "tag": "latest", "pullPolicy": "Always"}}, tmp_path
    )


def test_schema_rejects_a_malformed_cluster_id(tmp_path: Path) -> None:
    assert "clusterId" in helm_fails_with({"clusterId": "not-22-chars"}, tmp_path)


# ---------------------------------------------------------------------------------------------
# What Pulumi passes (infra/components/kafka.py build_values) renders cleanly
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stack_file", ["Pulumi.dev.yaml", "tests/fixtures/stacks/large.happy.yaml"], ids=["dev", "large"]
)
def test_component_values_render_and_pass_the_rules(stack_file: str) -> None:
    cfg = parse_raw_config(load_stack_file(charts.REPO_ROOT / stack_file))
    values = build_values(
        scope=Scope.of(cfg),
        settings=cfg.kafka,
        image=image_ref(cfg.images, "kafka"),
        init_image=image_ref(cfg.images, "tools"),
        cluster_id=kraft_cluster_id(PROJECT, "test", cfg.namespace),
    )
    objects = charts.render_with_values(CHART, values, namespace=cfg.namespace, release="kafka")
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert by_name["StatefulSet", "kafka"]["spec"]["replicas"] == cfg.kafka.replicas
    assert len(voters(by_name)) == cfg.kafka.replicas
    assert ("NetworkPolicy", "kafka-default-deny") not in by_name  # the namespace baseline has it
    found = [v for o in objects for v in security.violations(o)] + charts.checksum_violations(objects)
    assert found == []
    topics = json.loads(by_name["ConfigMap", "kafka-bootstrap-topics"]["data"]["topics.json"])
    assert [t["name"] for t in topics] == [t.name for t in cfg.kafka.topics]
    auth = json.loads(by_name["ConfigMap", "kafka-bootstrap-topics"]["data"]["auth.json"])
    assert [(u["name"], u["write"], u["read"]) for u in auth["users"]] == [
        ("ingestion", [t.name for t in cfg.kafka.topics], []),
        ("research", [], [t.name for t in cfg.kafka.topics]),
    ]
    sts = by_name["StatefulSet", "kafka"]["spec"]["template"]["spec"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in sts["affinity"]["podAntiAffinity"]


def test_dns_egress_can_be_left_to_the_namespace_baseline() -> None:
    objects = render({"networkPolicy": {"dns": {"enabled": False}}})
    for name in ("kafka-brokers", "kafka-bootstrap-topics"):
        egress = objects["NetworkPolicy", name]["spec"]["egress"]
        assert all(port["port"] != 53 for rule in egress for port in rule["ports"]), name
    (dns,) = [
        r for r in render()["NetworkPolicy", "kafka-bootstrap-topics"]["spec"]["egress"] if r["ports"][0]["port"] == 53
    ]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}


def test_a_user_without_read_or_write_lists_gets_no_such_acls() -> None:
    # Pulumi drops empty lists from a Release's values, so the component's `"read": []` for a writer
    # reaches helm as a missing key; the real node refused the dev stack when the schema required it.
    writer_only = [{k: v for k, v in u.items() if k != "read"} for u in USERS[:1]]
    objects = render({"auth": {"users": writer_only}})
    (user,) = json.loads(objects["ConfigMap", "kafka-bootstrap-topics"]["data"]["auth.json"])["users"]
    assert user["read"] == []
    assert user["write"] == USERS[0]["write"]
