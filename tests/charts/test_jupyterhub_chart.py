"""Chart unit tests for charts/jupyterhub with the real helm: hub config, auth kinds, RBAC, policies."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from tests.harness import charts

pytestmark = pytest.mark.charts

CHART = charts.REPO_ROOT / "charts" / "jupyterhub"
NAMESPACE = "qframe"
Objects = dict[tuple[str, str], dict[str, Any]]
OAUTH = {
    "existingSecret": "sso-client",
    "callbackUrl": "https://hub.example.com/hub/oauth_callback",
    "allowedGroups": ["quants"],
    "authorizeUrl": "https://sso.example.com/auth",
    "tokenUrl": "https://sso.example.com/token",
    "userdataUrl": "https://sso.example.com/userinfo",
}


def render(values: Mapping[str, Any] | None = None) -> Objects:
    return charts.render_by_name(CHART, values or {}, namespace=NAMESPACE, release="jupyterhub")


def hub_settings(objects: Objects) -> dict[str, Any]:
    return dict(json.loads(objects["ConfigMap", "jupyterhub-hub-config"]["data"]["hub.json"]))


def hub_env(objects: Objects) -> dict[str, Any]:
    (container,) = objects["Deployment", "jupyterhub-hub"]["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("valueFrom", e.get("value")) for e in container["env"]}


def test_hub_config_has_the_culler_service_and_the_chosen_authenticator() -> None:
    objects = render({"auth": {"kind": "dummy"}, "cull": {"enabled": True, "timeout": 900, "every": 60}})
    config = objects["ConfigMap", "jupyterhub-hub-config"]["data"]["jupyterhub_config.py"]
    assert '"jupyterhub_idle_culler"' in config
    assert "kubespawner.KubeSpawner" in config
    settings = hub_settings(objects)
    assert settings["auth"]["kind"] == "dummy"
    assert settings["cull"] == {"enabled": True, "timeout": 900, "every": 60}
    assert settings["proxy"]["apiUrl"] == "http://jupyterhub-proxy-api.qframe.svc:8001"
    assert settings["hub"]["connectUrl"] == "http://jupyterhub-hub.qframe.svc:8081"


def test_the_database_uri_and_tokens_only_by_secret_reference() -> None:
    env = hub_env(render())
    assert env["QFRAME_HUB_DB_URL"] == {"secretKeyRef": {"name": "postgres-jupyterhub", "key": "uri"}}
    assert env["CONFIGPROXY_AUTH_TOKEN"] == {"secretKeyRef": {"name": "jupyterhub-hub", "key": "proxy-token"}}
    assert "QFRAME_HUB_DUMMY_PASSWORD" not in env
    assert "OAUTH_CLIENT_SECRET" not in env


def test_switching_auth_kind_changes_exactly_the_hub_config_and_the_hub_pod() -> None:
    native = render({"auth": {"kind": "native"}})
    oauth = render({"auth": {"kind": "generic-oauth", "oauth": OAUTH}})
    assert native.keys() == oauth.keys()
    changed = {key for key in native if native[key] != oauth[key]}
    assert changed == {("ConfigMap", "jupyterhub-hub-config"), ("Deployment", "jupyterhub-hub")}
    env = hub_env(oauth)
    assert env["OAUTH_CLIENT_ID"] == {"secretKeyRef": {"name": "sso-client", "key": "client-id"}}
    assert env["OAUTH_CLIENT_SECRET"] == {"secretKeyRef": {"name": "sso-client", "key": "client-secret"}}
    assert hub_settings(oauth)["auth"]["oauth"]["allowedGroups"] == ["quants"]
    dummy_env = hub_env(render({"auth": {"kind": "dummy"}}))
    assert dummy_env["QFRAME_HUB_DUMMY_PASSWORD"] == {
        "secretKeyRef": {"name": "jupyterhub-hub", "key": "dummy-password"}
    }


def test_rbac_is_exactly_what_kubespawner_needs_in_its_namespace() -> None:
    objects = render()
    role = objects["Role", "jupyterhub-hub"]
    assert role["metadata"]["namespace"] == NAMESPACE
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): r["verbs"] for r in role["rules"]}
    assert rules == {
        (("",), ("pods",)): ["get", "list", "watch", "create", "delete"],
        (("",), ("persistentvolumeclaims",)): ["get", "list", "watch", "create", "delete"],
        (("",), ("events",)): ["get", "list", "watch"],
    }
    assert not any(kind == "ClusterRole" for kind, _ in objects)
    hub_pod = objects["Deployment", "jupyterhub-hub"]["spec"]["template"]["spec"]
    assert hub_pod["serviceAccountName"] == "jupyterhub-hub"
    assert (
        objects["Deployment", "jupyterhub-proxy"]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    )


def test_user_servers_are_restricted_and_labelled_for_their_services_only() -> None:
    values = {"singleuser": {"podLabels": {"qframe.io/mlflow-client": "true", "qframe.io/kafka-client": "true"}}}
    settings = hub_settings(render(values))["singleuser"]
    assert settings["podLabels"] == values["singleuser"]["podLabels"]
    assert settings["labels"]["app.kubernetes.io/component"] == "singleuser-server"
    config = render()["ConfigMap", "jupyterhub-hub-config"]["data"]["jupyterhub_config.py"]
    assert "c.KubeSpawner.automount_service_account_token = False" in config
    assert '"readOnlyRootFilesystem": True' in config


def test_policies_hub_proxy_and_user_servers() -> None:
    objects = render()
    singleuser = objects["NetworkPolicy", "jupyterhub-singleuser"]["spec"]
    assert singleuser["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "singleuser-server"
    (ingress,) = singleuser["ingress"]
    assert {p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in ingress["from"]} == {"hub", "proxy"}
    (egress,) = singleuser["egress"]
    assert egress["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "hub"
    assert egress["ports"] == [{"protocol": "TCP", "port": 8081}]
    proxy = objects["NetworkPolicy", "jupyterhub-proxy"]["spec"]
    public = proxy["ingress"][0]
    assert public["from"] == [{"podSelector": {"matchLabels": {"qframe.io/jupyterhub-client": "true"}}}]
    assert public["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert ("NetworkPolicy", "jupyterhub-client-egress-0") in objects


DASK_USERS = {"serviceAccount": "dask-users", "serviceAccountPurpose": "creates the user's own Dask clusters"}


def test_a_user_service_account_opens_the_api_server_to_user_servers_and_nothing_else() -> None:
    default = render()["NetworkPolicy", "jupyterhub-singleuser"]["spec"]["egress"]
    objects = render({"singleuser": DASK_USERS})
    egress = objects["NetworkPolicy", "jupyterhub-singleuser"]["spec"]["egress"]
    # Exactly one rule more: the API server ports, by port only (its address is not a pod).
    assert egress[: len(default)] == default
    assert egress[len(default) :] == [{"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}]
    settings = hub_settings(objects)["singleuser"]
    assert (settings["serviceAccount"], settings["serviceAccountPurpose"]) == (
        DASK_USERS["serviceAccount"],
        DASK_USERS["serviceAccountPurpose"],
    )


def test_a_purpose_needs_a_service_account() -> None:
    with pytest.raises(
        charts.HelmError, match=r"singleuser\.serviceAccountPurpose: is set while singleuser\.serviceAccount"
    ):
        render({"singleuser": {"serviceAccountPurpose": "creates the user's own Dask clusters"}})


def test_an_identity_only_account_gets_no_api_token_and_no_api_egress() -> None:
    # IRSA on EKS: the servers run as the notebooks account for its IAM role; the EKS webhook mounts
    # the web-identity token itself, so the Kubernetes API stays closed to them.
    default = render()
    objects = render({"singleuser": {"serviceAccount": "notebooks"}})
    assert objects["NetworkPolicy", "jupyterhub-singleuser"] == default["NetworkPolicy", "jupyterhub-singleuser"]
    config = objects["ConfigMap", "jupyterhub-hub-config"]["data"]["jupyterhub_config.py"]
    settings = hub_settings(objects)["singleuser"]
    assert (settings["serviceAccount"], settings["serviceAccountPurpose"]) == ("notebooks", "")
    assert 'c.KubeSpawner.service_account = singleuser["serviceAccount"] or None' in config
    assert 'if singleuser["serviceAccountPurpose"]:' in config


def test_ingress_only_when_enabled() -> None:
    assert not any(kind == "Ingress" for kind, _ in render())
    objects = render({"ingress": {"enabled": True, "host": "hub.example.com", "tlsSecret": "hub-tls"}})
    spec = objects["Ingress", "jupyterhub"]["spec"]
    assert spec["tls"] == [{"hosts": ["hub.example.com"], "secretName": "hub-tls"}]
    assert spec["rules"][0]["http"]["paths"][0]["backend"]["service"] == {
        "name": "jupyterhub",
        "port": {"name": "http"},
    }


MLFLOW_ON = {"mlflow": {"enabled": True, "url": "http://mlflow.qframe.svc:5000", "adminUsername": "root"}}


def test_mlflow_accounts_add_exactly_secret_writes_to_the_role_and_two_secret_refs() -> None:
    off, on = render(), render(MLFLOW_ON)
    assert off.keys() == on.keys()
    changed = {key for key in on if on[key] != off[key]}
    assert changed == {
        ("ConfigMap", "jupyterhub-hub-config"),
        ("Deployment", "jupyterhub-hub"),
        ("Role", "jupyterhub-hub"),
    }
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): r["verbs"] for r in on["Role", "jupyterhub-hub"]["rules"]}
    # Written (create, replace), never read back: no get/list/watch on Secrets.
    assert rules[("",), ("secrets",)] == ["create", "update"]
    assert len(rules) == 4
    env = hub_env(on)
    assert env["QFRAME_MLFLOW_ADMIN_PASSWORD"] == {"secretKeyRef": {"name": "mlflow-auth", "key": "admin-password"}}
    assert env["QFRAME_MLFLOW_USER_KEY"] == {"secretKeyRef": {"name": "jupyterhub-hub", "key": "mlflow-user-key"}}
    assert not any(name.startswith("QFRAME_MLFLOW") for name in hub_env(off))
    settings = hub_settings(on)["mlflow"]
    assert settings["url"] == "http://mlflow.qframe.svc:5000"
    assert settings["adminUsername"] == "root"
    assert settings["secretLabels"]["app.kubernetes.io/instance"] == "jupyterhub"
    data = on["ConfigMap", "jupyterhub-hub-config"]["data"]
    assert data["mlflow_accounts.py"] == (CHART / "files" / "mlflow_accounts.py").read_text(encoding="utf-8")
    assert "pre_spawn_hook" in data["jupyterhub_config.py"]


def test_mlflow_accounts_need_the_tracking_url() -> None:
    with pytest.raises(charts.HelmError, match=r"mlflow\.url: is empty"):
        render({"mlflow": {"enabled": True}})
