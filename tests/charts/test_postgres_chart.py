"""Chart unit tests for charts/postgres: "should render X when Y is set", with the real helm."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.harness import charts, security

pytestmark = pytest.mark.charts

CHART = charts.REPO_ROOT / "charts" / "postgres"
NAMESPACE = "qframe"
# Values a test passes in that must never show up in what the chart renders.
CANARY = "canary-password-value-9f3b"


def render(values: Mapping[str, Any] | None = None, release: str = "postgres") -> dict[tuple[str, str], dict[str, Any]]:
    return charts.render_by_name(CHART, values or {}, namespace=NAMESPACE, release=release)


def helm_template_fails(tmp_path: Path, values: Mapping[str, Any]) -> str:
    return charts.rejection_message(CHART, values, tmp_path, release="postgres")


def init_container(objects: Mapping[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    job = objects["Job", "postgres-init-databases"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def test_defaults_render_the_expected_objects() -> None:
    assert sorted(render()) == [
        ("ConfigMap", "postgres-config"),
        ("ConfigMap", "postgres-init-databases"),
        ("Job", "postgres-init-databases"),
        ("NetworkPolicy", "postgres-client-egress-0"),
        ("NetworkPolicy", "postgres-default-deny"),
        ("NetworkPolicy", "postgres-ingress"),
        ("NetworkPolicy", "postgres-init-databases-egress"),
        ("Service", "postgres"),
        ("Service", "postgres-headless"),
        ("StatefulSet", "postgres"),
    ]


def test_no_object_is_a_secret_and_none_contains_a_password() -> None:
    # The chart has no value that takes a password (see the schema test below), renders no Secret
    # and hands passwords to pods only by reference.
    objects = render()
    assert not [key for key in objects if key[0] == "Secret"]
    assert CANARY not in json.dumps(list(objects.values()))
    # Passwords reach pods only through secretKeyRef or a mounted Secret, never as literal env values.
    for obj in objects.values():
        for pod in security.pod_contexts(obj):
            for container in security.container_contexts(pod):
                for env in container.container.get("env") or []:
                    if "PASSWORD" in env["name"]:
                        assert "value" not in env, f"{env['name']} is a literal in {pod.where}"
                        assert "secretKeyRef" in env["valueFrom"]


def test_schema_has_no_place_for_a_password(tmp_path: Path) -> None:
    stderr = helm_template_fails(tmp_path, {"auth": {"password": CANARY}})
    assert "password" in stderr
    stderr = helm_template_fails(
        tmp_path, {"consumers": [{"name": "mlflow", "existingSecret": "s", "password": CANARY}]}
    )
    assert "password" in stderr


def test_job_reads_every_password_from_a_mounted_secret_file_not_the_environment() -> None:
    values = {
        "consumers": [
            {"name": "mlflow", "existingSecret": "mlflow-db"},
            {"name": "feature_store", "existingSecret": "feature-store-db"},
        ]
    }
    objects = render(values)
    container = init_container(objects)
    # No password in the environment (inherited by every child process, shown by debugging tools).
    assert [e["name"] for e in container["env"]] == ["PYTHONDONTWRITEBYTECODE"]
    assert container["command"][-2:] == ["--password-file", "/etc/init-databases/secrets/superuser/password"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
    assert mount == {"name": "secrets", "mountPath": "/etc/init-databases/secrets", "readOnly": True}
    pod = objects["Job", "postgres-init-databases"]["spec"]["template"]["spec"]
    projected = next(v for v in pod["volumes"] if v["name"] == "secrets")["projected"]
    assert projected["sources"] == [
        {
            "secret": {
                "name": "postgres-superuser",
                "items": [{"key": "postgres-password", "path": "superuser/password"}],
            }
        },
        {"secret": {"name": "mlflow-db", "items": [{"key": "password", "path": "consumers/mlflow/password"}]}},
        {
            "secret": {
                "name": "feature-store-db",
                "items": [{"key": "password", "path": "consumers/feature_store/password"}],
            }
        },
    ]
    assert projected["defaultMode"] == 0o440
    consumers = json.loads(objects["ConfigMap", "postgres-init-databases"]["data"]["consumers.json"])
    assert consumers == [
        {"name": "mlflow", "passwordFile": "/etc/init-databases/secrets/consumers/mlflow/password"},
        {"name": "feature_store", "passwordFile": "/etc/init-databases/secrets/consumers/feature_store/password"},
    ]


def test_job_is_an_idempotent_post_install_and_upgrade_hook() -> None:
    job = render()["Job", "postgres-init-databases"]
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert job["spec"]["backoffLimit"] == 6
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    command = init_container(render())["command"]
    assert command[:2] == ["python3", "/opt/init-databases/init-databases.py"]
    assert "--consumers-json" in command


def test_init_script_configmap_is_the_chart_file_and_has_no_secret_looking_keys() -> None:
    configmap = render()["ConfigMap", "postgres-init-databases"]
    assert security.rule_no_secrets_in_configmaps(configmap) == []
    script = (CHART / "files" / "init-databases.py").read_text(encoding="utf-8")
    assert configmap["data"]["init-databases.py"].strip() == script.strip()


def test_network_policy_admits_exactly_the_configured_clients_on_5432() -> None:
    clients = [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}},
        {
            "podSelector": {"matchLabels": {"role": "notebook"}},
            "namespaceSelector": {"matchLabels": {"qframe.io/tenant": "true"}},
        },
    ]
    objects = render({"networkPolicy": {"defaultDeny": True, "allowedClients": clients}})
    spec = objects["NetworkPolicy", "postgres-ingress"]["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "database"
    (rule,) = spec["ingress"]
    init_peer = {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "postgres",
                "app.kubernetes.io/instance": "postgres",
                "app.kubernetes.io/component": "init-databases",
            }
        }
    }
    assert rule["from"] == [*clients, init_peer]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert "egress" not in spec
    assert "Egress" in spec["policyTypes"]


def test_network_policy_default_client_is_the_postgres_client_label() -> None:
    (rule,) = render()["NetworkPolicy", "postgres-ingress"]["spec"]["ingress"]
    assert rule["from"][0] == {"podSelector": {"matchLabels": {"qframe.io/postgres-client": "true"}}}
    assert len(rule["from"]) == 2


def test_init_job_pods_match_the_init_peer_and_server_pods_match_the_policy() -> None:
    objects = render()
    job_labels = objects["Job", "postgres-init-databases"]["spec"]["template"]["metadata"]["labels"]
    (rule,) = objects["NetworkPolicy", "postgres-ingress"]["spec"]["ingress"]
    assert rule["from"][-1]["podSelector"]["matchLabels"].items() <= job_labels.items()
    server_labels = objects["StatefulSet", "postgres"]["spec"]["template"]["metadata"]["labels"]
    selector = objects["NetworkPolicy", "postgres-ingress"]["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= server_labels.items()
    assert not selector.items() <= job_labels.items(), "the Service/policy must not select the init Job"


def test_statefulset_storage_image_and_superuser_secret_come_from_values() -> None:
    values = {
        "image": {"repository": "registry.example.com/qframe/postgres", "tag": "1.2.3", "pullPolicy": "Always"},
        "persistence": {"size": "20Gi", "storageClassName": "fast-ssd"},
        "auth": {"existingSecret": "pg-root"},
    }
    sts = render(values)["StatefulSet", "postgres"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/qframe/postgres:1.2.3"
    superuser = next(v for v in pod["volumes"] if v["name"] == "superuser")
    assert superuser["secret"]["secretName"] == "pg-root"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PGDATA"].startswith("/var/lib/postgresql/data/")
    assert "storageClassName" not in render()["StatefulSet", "postgres"]["spec"]["volumeClaimTemplates"][0]["spec"]


def test_digest_wins_over_tag() -> None:
    digest = "sha256:" + "ab" * 32
    sts = render({"image": {"repository": "qframe/postgres", "tag": "0.1.0", "digest": digest, "pullPolicy": "Never"}})
    assert sts["StatefulSet", "postgres"]["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"qframe/postgres@{digest}"
    )


def test_readiness_and_liveness_probes_differ() -> None:
    # Ready = accepting connections; alive = answering at all. A server in crash recovery answers
    # "rejecting" (pg_isready exit 1): not ready, but restarting it would only restart the recovery.
    (container,) = render()["StatefulSet", "postgres"]["spec"]["template"]["spec"]["containers"]
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    assert readiness["exec"] != liveness["exec"]
    assert readiness["exec"]["command"][0] == "pg_isready"
    shell, flag, script = liveness["exec"]["command"]
    assert (shell, flag) == ("sh", "-c")
    assert script.startswith("pg_isready ")
    assert script.endswith("; [ $? -le 1 ]")
    # The probe's timeout outlasts pg_isready's own, so a hung server fails the check, not the probe.
    assert liveness["timeoutSeconds"] > 4


def _liveness_verdict(tmp_path: Path, script: str, pg_isready_exit: int) -> int:
    # Runs the rendered liveness script with a stand-in pg_isready that exits with a given code.
    stub = tmp_path / "pg_isready"
    stub.write_text(f"#!/bin/sh\nexit {pg_isready_exit}\n", encoding="utf-8")
    stub.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "POSTGRES_USER": "postgres"}
    return subprocess.run(["sh", "-c", script], env=env, check=False).returncode


@pytest.mark.parametrize(("pg_isready_exit", "alive"), [(0, True), (1, True), (2, False), (3, False)])
def test_liveness_restarts_only_a_server_that_does_not_answer(
    tmp_path: Path, pg_isready_exit: int, alive: bool
) -> None:
    (container,) = render()["StatefulSet", "postgres"]["spec"]["template"]["spec"]["containers"]
    script = container["livenessProbe"]["exec"]["command"][2]
    assert (_liveness_verdict(tmp_path, script, pg_isready_exit) == 0) is alive


def test_every_empty_dir_has_a_size_limit() -> None:
    for obj in render().values():
        for pod in security.pod_contexts(obj):
            for volume in pod.spec.get("volumes") or []:
                if "emptyDir" in volume:
                    assert volume["emptyDir"].get("sizeLimit"), f"{pod.where}: emptyDir {volume['name']} is unbounded"


def test_pg_hba_default_admits_only_the_pod_network_with_scram() -> None:
    hba = render()["ConfigMap", "postgres-config"]["data"]["pg_hba.conf"]
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert {rule[-1] for rule in rules} == {"scram-sha-256"}
    assert [rule[3] for rule in rules if rule[0] == "host"] == ["127.0.0.1/32", "::1/128", "10.244.0.0/16"]


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0", "10.0.0.0/0", "10.244.0.0/16 trust"])
def test_schema_refuses_a_catch_all_or_malformed_pg_hba_network(tmp_path: Path, cidr: str) -> None:
    assert "allowedCIDRs" in helm_template_fails(tmp_path, {"auth": {"allowedCIDRs": [cidr]}})


def test_pg_hba_uses_scram_for_the_allowed_networks_only() -> None:
    hba = render({"auth": {"allowedCIDRs": ["10.42.0.0/16"]}})["ConfigMap", "postgres-config"]["data"]["pg_hba.conf"]
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert {rule[-1] for rule in rules} == {"scram-sha-256"}
    assert ["host", "all", "all", "10.42.0.0/16", "scram-sha-256"] in rules
    assert not any("0.0.0.0/0" in rule for rule in rules)


def test_schema_rejects_an_unknown_nested_key(tmp_path: Path) -> None:
    stderr = helm_template_fails(tmp_path, {"persistence": {"size": "5Gi", "sizeInGb": 5}})
    assert "sizeInGb" in stderr


def test_schema_rejects_a_wrong_type(tmp_path: Path) -> None:
    stderr = helm_template_fails(tmp_path, {"initJob": {"backoffLimit": "six"}})
    assert "backoffLimit" in stderr


def test_schema_rejects_latest_and_a_bad_consumer_name(tmp_path: Path) -> None:
    assert "tag" in helm_template_fails(tmp_path, {"image": {"repository": "qframe/postgres", "tag": "latest"}})
    stderr = helm_template_fails(tmp_path, {"consumers": [{"name": "Bad-Name", "existingSecret": "s"}]})
    assert "consumers" in stderr


def test_duplicate_consumers_are_rejected(tmp_path: Path) -> None:
    twice = [{"name": "mlflow", "existingSecret": "a"}, {"name": "mlflow", "existingSecret": "b"}]
    assert "listed twice" in helm_template_fails(tmp_path, {"consumers": twice})


def test_init_job_may_reach_only_the_cluster_dns_pods_on_53() -> None:
    egress = render()["NetworkPolicy", "postgres-init-databases-egress"]["spec"]["egress"]
    dns_rules = [rule for rule in egress if {"protocol": "UDP", "port": 53} in rule["ports"]]
    assert dns_rules == [
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }
    ]


@pytest.mark.parametrize(
    "client",
    [
        {"podSelector": {"matchLabels": {}}},
        {"podSelector": {"matchLabels": {"app": "x"}}, "namespaceSelector": {"matchLabels": {}}},
        {"podSelector": {"matchLabels": {"app": "x"}}, "namespaceSelector": {}},
    ],
    ids=["empty-pod-selector", "empty-namespace-labels", "empty-namespace-selector"],
)
def test_schema_refuses_a_client_selector_that_matches_everything(tmp_path: Path, client: dict[str, Any]) -> None:
    assert "allowedClients" in helm_template_fails(tmp_path, {"networkPolicy": {"allowedClients": [client]}})
