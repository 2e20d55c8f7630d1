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


def test_no_object_is_a_secret_and_no_credential_is_in_an_environment() -> None:
    objects = render()
    assert not [key for key in objects if key[0] == "Secret"]
    assert CANARY not in json.dumps(list(objects.values()))
    for obj in objects.values():
        for pod in security.pod_contexts(obj):
            for container in security.container_contexts(pod):
                for env in container.container.get("env") or []:
                    # Credentials are mounted files: an environment is inherited by every child
                    # process and shown by debugging tools; only *_FILE pointers may be set.
                    if any(word in env["name"] for word in ("PASSWORD", "KEY", "ROOT_USER")):
                        assert env["name"].endswith("_FILE"), f"{env['name']} is set in {container.where}"
                        assert env["value"].startswith("/etc/"), f"{env['name']} is not a file path"


def test_server_reads_its_root_credentials_from_the_mounted_secret() -> None:
    pod = render()["StatefulSet", "minio"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MINIO_ROOT_USER_FILE"]["value"] == "/etc/minio/root/root-user"
    assert env["MINIO_ROOT_PASSWORD_FILE"]["value"] == "/etc/minio/root/root-password"
    assert {"name": "root", "mountPath": "/etc/minio/root", "readOnly": True} in container["volumeMounts"]
    root = next(v for v in pod["volumes"] if v["name"] == "root")["secret"]
    assert root["secretName"] == "minio-root"
    assert "optional" not in root, "a missing Secret must stop the pod, not start MinIO with default credentials"
    assert root["items"] == [
        {"key": "root-user", "path": "root-user"},
        {"key": "root-password", "path": "root-password"},
    ]


def test_every_empty_dir_has_a_size_limit() -> None:
    for obj in render().values():
        for pod in security.pod_contexts(obj):
            for volume in pod.spec.get("volumes") or []:
                if "emptyDir" in volume:
                    assert volume["emptyDir"].get("sizeLimit"), f"{pod.where}: emptyDir {volume['name']} is unbounded"


def test_schema_has_no_place_for_a_credential(tmp_path: Path) -> None:
    assert "rootPassword" in helm_template_fails(tmp_path, {"auth": {"existingSecret": "s", "rootPassword": CANARY}})
    consumer = {"name": "mlflow", "existingSecret": "s", "buckets": ["qframe-data-lake"], "access": "readwrite"}
    assert "secretKey" in helm_template_fails(tmp_path, {"consumers": [{**consumer, "secretKey": CANARY}]})


def test_job_reads_root_and_consumer_keys_from_mounted_secret_files() -> None:
    objects = render()
    container = init_container(objects)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MINIO_ROOT_USER_FILE"] == "/etc/init-buckets/secrets/root/root-user"
    assert env["MINIO_ROOT_PASSWORD_FILE"] == "/etc/init-buckets/secrets/root/root-password"
    assert {"name": "secrets", "mountPath": "/etc/init-buckets/secrets", "readOnly": True} in container["volumeMounts"]
    pod = objects["Job", "minio-init-buckets"]["spec"]["template"]["spec"]
    projected = next(v for v in pod["volumes"] if v["name"] == "secrets")["projected"]
    assert projected["sources"] == [
        {
            "secret": {
                "name": "minio-root",
                "items": [
                    {"key": "root-user", "path": "root/root-user"},
                    {"key": "root-password", "path": "root/root-password"},
                ],
            }
        },
        *(
            {
                "secret": {
                    "name": f"object-store-{name}",
                    "items": [
                        {"key": "access-key", "path": f"consumers/{name}/access-key"},
                        {"key": "secret-key", "path": f"consumers/{name}/secret-key"},
                    ],
                }
            }
            for name in ("mlflow", "research")
        ),
    ]
    config = json.loads(objects["ConfigMap", "minio-init-buckets"]["data"]["config.json"])
    assert config == {
        "buckets": ["qframe-data-lake", "qframe-mlflow-artifacts"],
        "versioning": True,
        "consumers": [
            {
                "name": "mlflow",
                "buckets": ["qframe-mlflow-artifacts"],
                "access": "readwrite",
                "accessKeyFile": "/etc/init-buckets/secrets/consumers/mlflow/access-key",
                "secretKeyFile": "/etc/init-buckets/secrets/consumers/mlflow/secret-key",
            },
            {
                "name": "research",
                "buckets": ["qframe-data-lake"],
                "access": "readwrite",
                "accessKeyFile": "/etc/init-buckets/secrets/consumers/research/access-key",
                "secretKeyFile": "/etc/init-buckets/secrets/consumers/research/secret-key",
            },
        ],
    }


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


def test_init_job_may_reach_only_the_cluster_dns_pods_on_53() -> None:
    egress = render()["NetworkPolicy", "minio-init-buckets-egress"]["spec"]["egress"]
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
