"""The schema checker can fail: unknown fields, wrong types and unknown kinds are all reported."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.k8s_schema import schema_dir_for, schema_errors
from tools.versions import parse_versions, pinned_versions

pytestmark = pytest.mark.unit

KUBE = pinned_versions()["KUBE_VERSION"]


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.local/web:1.0.0",
                            "ports": [{"containerPort": 8080}],
                            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                        }
                    ]
                },
            },
        },
    }


def test_valid_objects_have_no_errors() -> None:
    assert schema_errors(deployment(), KUBE) == []
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    assert schema_errors(policy, KUBE) == []


def test_unknown_field_is_rejected_with_its_path() -> None:
    d = deployment()
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicey"] = "Always"
    (error,) = schema_errors(d, KUBE)
    assert error.startswith("Deployment/web: spec.template.spec.containers.0: ")
    assert "imagePullPolicey" in error


def test_unknown_top_level_field_is_rejected() -> None:
    d = deployment()
    d["specs"] = {}
    (error,) = schema_errors(d, KUBE)
    assert "'specs' was unexpected" in error


def test_wrong_type_is_rejected_with_its_path() -> None:
    d = deployment()
    d["spec"]["replicas"] = "two"
    (error,) = schema_errors(d, KUBE)
    assert error.startswith("Deployment/web: spec.replicas: ")
    assert "'two'" in error


def test_every_error_is_reported_not_only_the_first() -> None:
    d = deployment()
    d["spec"]["replicas"] = "two"
    d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    errors = schema_errors(d, KUBE)
    assert [e.split(": ")[1] for e in errors] == [
        "spec.replicas",
        "spec.template.spec.containers.0.ports.0.containerPort",
    ]


def test_unknown_custom_resource_is_reported_not_passed() -> None:
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "rc"}, "spec": {}}
    assert schema_errors(cluster, KUBE) == [f"RayCluster/rc: no schema for ray.io/v1/RayCluster (Kubernetes {KUBE})"]


def test_allowlisted_custom_resource_passes_but_needs_a_name() -> None:
    cluster: dict[str, Any] = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "rc"}, "spec": {}}
    assert schema_errors(cluster, KUBE, allowed_crds={"ray.io/v1/RayCluster"}) == []
    del cluster["metadata"]["name"]
    assert schema_errors(cluster, KUBE, allowed_crds={"ray.io/v1/RayCluster"}) == [
        "RayCluster/<no name>: metadata.name is missing"
    ]


def test_a_group_that_only_looks_built_in_has_no_schema() -> None:
    # apps.example.com/v1 maps to the same file name as apps/v1; the schema's GVK must decide.
    d = deployment()
    d["apiVersion"] = "apps.example.com/v1"
    assert schema_errors(d, KUBE) == [
        f"Deployment/web: no schema for apps.example.com/v1/Deployment (Kubernetes {KUBE})"
    ]


def test_removed_api_version_has_no_schema() -> None:
    d = deployment()
    d["apiVersion"] = "extensions/v1beta1"
    assert schema_errors(d, KUBE)[0].startswith("Deployment/web: no schema for extensions/v1beta1/Deployment")


def test_missing_kind_is_an_error() -> None:
    assert schema_errors({"apiVersion": "v1", "metadata": {"name": "x"}}, KUBE) == [
        "<no kind>/x: apiVersion and kind must be non-empty strings"
    ]


def test_schemas_follow_the_pinned_minor_version() -> None:
    assert schema_dir_for(KUBE) == f"v{'.'.join(KUBE.split('.')[:2])}.0-local-strict"
    assert schema_dir_for("v1.34.2") == "v1.34.0-local-strict"
    assert schema_dir_for("1.25.16") == "v1.25.0-local-strict"


def test_unsupported_version_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"no schemas for Kubernetes 9\.99"):
        schema_dir_for("9.99.0")
    with pytest.raises(ValueError, match=r"no schemas for Kubernetes 1\.2\.0"):
        schema_dir_for("1.2.0")
    with pytest.raises(ValueError, match="not a Kubernetes version"):
        schema_dir_for("latest")


def test_versions_env_parsing() -> None:
    text = '# comment\n\nKUBE_VERSION=1.34.2\nexport HELM_VERSION="v3.22.0"  # pinned\n'
    assert parse_versions(text) == {"KUBE_VERSION": "1.34.2", "HELM_VERSION": "v3.22.0"}
    with pytest.raises(ValueError, match="line 1"):
        parse_versions("not a pin\n")
    assert {"KUBE_VERSION", "HELM_VERSION"} <= pinned_versions().keys()
