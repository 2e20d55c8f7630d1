"""Chart unit tests for charts/minio: "should render X when Y is set", with the real helm."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.harness import charts, security

pytestmark = pytest.mark.charts

CHART = charts.REPO_ROOT / "charts" / "minio"
NAMESPACE = "qframe"
CANARY = "canary-secret-value-7c1d"


def render(values: Mapping[str, Any] | None = None, release: str = "minio") -> dict[tuple[str, str], dict[str, Any]]:
    return charts.render_by_name(CHART, values or {}, namespace=NAMESPACE, release=release)


def helm_template_fails(tmp_path: Path, values: Mapping[str, Any]) -> str:
    return charts.rejection_message(CHART, values, tmp_path, release="minio")


def init_container(objects: Mapping[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    (container,) = objects["Job", "minio-init-buckets"]["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def test_defaults_render_the_expected_objects() -> None:
    assert sorted(render()) == [
        ("ConfigMap", "minio-init-buckets"),
        ("Job", "minio-init-buckets"),
        ("NetworkPolicy", "minio-client-egress-0"),
        ("NetworkPolicy", "minio-default-deny"),
        ("NetworkPolicy", "minio-ingress"),
        ("NetworkPolicy", "minio-init-buckets-egress"),
        ("Service", "minio"),
        ("Service", "minio-headless"),
        ("StatefulSet", "minio"),
    ]


def test_no_object_is_a_secret_and_credentials_come_only_from_secret_refs() -> None:
    objects = render()
    assert not [key for key in objects if key[0] == "Secret"]
    assert CANARY not in json.dumps(list(objects.values()))
    for obj in objects.values():
        for pod in security.pod_contexts(obj):
            for container in security.container_contexts(pod):
                for env in container.container.get("env") or []:
                    if any(word in env["name"] for word in ("PASSWORD", "KEY", "ROOT_USER")):
                        assert "value" not in env, f"{env['name']} is a literal in {pod.where}"
                        assert "secretKeyRef" in env["valueFrom"]


def test_schema_has_no_place_for_a_credential(tmp_path: Path) -> None:
    assert "rootPassword" in helm_template_fails(tmp_path, {"auth": {"existingSecret": "s", "rootPassword": CANARY}})
    consumer = {"name": "mlflow", "existingSecret": "s", "buckets": ["qframe-data-lake"], "access": "readwrite"}
    assert "secretKey" in helm_template_fails(tmp_path, {"consumers": [{**consumer, "secretKey": CANARY}]})


def test_job_reads_root_and_consumer_keys_from_secrets() -> None:
    objects = render()
    env = {e["name"]: e for e in init_container(objects)["env"]}
    assert env["MINIO_ROOT_USER"]["valueFrom"] == {"secretKeyRef": {"name": "minio-root", "key": "root-user"}}
    assert env["MINIO_ROOT_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "minio-root", "key": "root-password"}}
    for name in ("mlflow", "research"):
        secret = f"object-store-{name}"
        assert env[f"CONSUMER_ACCESS_KEY_{name.upper()}"]["valueFrom"] == {
            "secretKeyRef": {"name": secret, "key": "access-key"}
        }
        assert env[f"CONSUMER_SECRET_KEY_{name.upper()}"]["valueFrom"] == {
            "secretKeyRef": {"name": secret, "key": "secret-key"}
        }
    config = json.loads(objects["ConfigMap", "minio-init-buckets"]["data"]["config.json"])
    assert config == {
        "buckets": ["qframe-data-lake", "qframe-mlflow-artifacts"],
        "versioning": True,
        "consumers": [
            {
                "name": "mlflow",
                "buckets": ["qframe-mlflow-artifacts"],
                "access": "readwrite",
                "accessKeyEnv": "CONSUMER_ACCESS_KEY_MLFLOW",
                "secretKeyEnv": "CONSUMER_SECRET_KEY_MLFLOW",
            },
            {
                "name": "research",
                "buckets": ["qframe-data-lake"],
                "access": "readwrite",
                "accessKeyEnv": "CONSUMER_ACCESS_KEY_RESEARCH",
                "secretKeyEnv": "CONSUMER_SECRET_KEY_RESEARCH",
            },
        ],
    }


def test_dashed_consumer_names_become_valid_env_names() -> None:
    consumers = [
        {"name": "feature-store", "existingSecret": "fs", "buckets": ["qframe-data-lake"], "access": "readonly"}
    ]
    env = {e["name"] for e in init_container(render({"consumers": consumers}))["env"]}
    assert {"CONSUMER_ACCESS_KEY_FEATURE_STORE", "CONSUMER_SECRET_KEY_FEATURE_STORE"} <= env


def test_job_is_an_idempotent_post_install_and_upgrade_hook() -> None:
    objects = render()
    job = objects["Job", "minio-init-buckets"]
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    command = init_container(objects)["command"]
    assert command[:2] == ["python3", "/opt/init-buckets/init-minio.py"]
    assert command[command.index("--endpoint") + 1] == "http://minio:9000"
    assert init_container(objects)["image"] == "qframe/tools:0.1.0"


def test_init_script_configmap_is_the_chart_file() -> None:
    configmap = render()["ConfigMap", "minio-init-buckets"]
    assert security.rule_no_secrets_in_configmaps(configmap) == []
    script = (CHART / "files" / "init-minio.py").read_text(encoding="utf-8")
    assert configmap["data"]["init-minio.py"].strip() == script.strip()


def test_network_policy_admits_exactly_the_configured_clients_on_9000() -> None:
    clients = [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}},
        {
            "podSelector": {"matchLabels": {"role": "notebook"}},
            "namespaceSelector": {"matchLabels": {"qframe.io/tenant": "true"}},
        },
    ]
    spec = render({"networkPolicy": {"defaultDeny": True, "allowedClients": clients}})[
        "NetworkPolicy", "minio-ingress"
    ]["spec"]
    assert spec["podSelector"] == {
        "matchLabels": {
            "app.kubernetes.io/name": "minio",
            "app.kubernetes.io/instance": "minio",
            "app.kubernetes.io/component": "server",
        }
    }
    (rule,) = spec["ingress"]
    init_peer = {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "minio",
                "app.kubernetes.io/instance": "minio",
                "app.kubernetes.io/component": "init-buckets",
            }
        }
    }
    assert rule["from"] == [*clients, init_peer]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9000}]
    assert "egress" not in spec


def test_network_policy_default_client_is_the_object_store_client_label() -> None:
    objects = render()
    (rule,) = objects["NetworkPolicy", "minio-ingress"]["spec"]["ingress"]
    assert rule["from"][0] == {"podSelector": {"matchLabels": {"qframe.io/object-store-client": "true"}}}
    assert len(rule["from"]) == 2
    job_labels = objects["Job", "minio-init-buckets"]["spec"]["template"]["metadata"]["labels"]
    assert rule["from"][1]["podSelector"]["matchLabels"].items() <= job_labels.items()
    assert objects["NetworkPolicy", "minio-default-deny"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }


def test_console_is_off_by_default_and_opt_in() -> None:
    service = render()["Service", "minio"]
    assert [p["port"] for p in service["spec"]["ports"]] == [9000]
    objects = render({"service": {"console": {"enabled": True}}})
    assert [p["port"] for p in objects["Service", "minio"]["spec"]["ports"]] == [9000, 9001]
    rules = objects["NetworkPolicy", "minio-ingress"]["spec"]["ingress"]
    assert [r["ports"] for r in rules] == [[{"protocol": "TCP", "port": 9000}], [{"protocol": "TCP", "port": 9001}]]


def test_statefulset_runs_minio_with_storage_probes_and_security_from_values() -> None:
    sts = render({"persistence": {"size": "50Gi", "storageClassName": "fast-ssd"}})["StatefulSet", "minio"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["minio", "server", "/data", "--address", ":9000", "--console-address", ":9001"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/minio/health/ready", "port": "api"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/minio/health/live", "port": "api"}
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["fsGroup"] == 1000
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_schema_rejects_an_unknown_key_and_a_wrong_type(tmp_path: Path) -> None:
    assert "sizeInGb" in helm_template_fails(tmp_path, {"persistence": {"size": "5Gi", "sizeInGb": 5}})
    assert "backoffLimit" in helm_template_fails(tmp_path, {"initJob": {"backoffLimit": "six"}})
    assert "versioning" in helm_template_fails(tmp_path, {"versioning": "yes"})


def test_schema_rejects_bad_access_and_bucket_names(tmp_path: Path) -> None:
    consumer = {"name": "mlflow", "existingSecret": "s", "buckets": ["qframe-data-lake"], "access": "admin"}
    assert "access" in helm_template_fails(tmp_path, {"consumers": [consumer]})
    assert "buckets" in helm_template_fails(tmp_path, {"buckets": ["Bad_Bucket"]})


def test_consumer_bucket_must_be_a_platform_bucket_and_names_unique(tmp_path: Path) -> None:
    stray = {"name": "mlflow", "existingSecret": "s", "buckets": ["elsewhere"], "access": "readwrite"}
    assert "not in buckets" in helm_template_fails(tmp_path, {"consumers": [stray]})
    one = {"name": "mlflow", "existingSecret": "s", "buckets": ["qframe-data-lake"], "access": "readwrite"}
    assert "listed twice" in helm_template_fails(tmp_path, {"consumers": [one, one]})
