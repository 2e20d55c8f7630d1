"""`qframe-ops` errors and patches against small fakes of the API (no cluster, no recording needed):
unreachable cluster, missing namespace, components not deployed, bad flags, the exact patch sent.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infra.ops import cli
from infra.ops.kube import RecordedKubeApi, request_key

pytestmark = pytest.mark.unit


def test_missing_namespace_is_one_line_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    api = RecordedKubeApi({"GET /api/v1/namespaces/elsewhere": {"status": 404, "reason": "NotFound", "message": ""}})
    monkeypatch.setattr(cli, "make_kube_api", lambda context: api)
    result = CliRunner().invoke(cli.app, ["status", "-n", "elsewhere"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: namespace 'elsewhere' does not exist in this cluster; pass")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_cluster_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "gone",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    result = CliRunner().invoke(cli.app, ["status", "--context", "gone"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line
    assert line.startswith(f"error: cluster unreachable at https://127.0.0.1:{port} (context gone): ")
    assert "make up" in line


def test_scale_when_not_deployed_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    api = RecordedKubeApi(
        {
            "GET /api/v1/namespaces/qframe": {"status": 200, "body": {"metadata": {"name": "qframe"}}},
            "GET /apis/kubernetes.dask.org/v1/namespaces/qframe/daskautoscalers": {
                "status": 404,
                "reason": "NotFound",
                "message": "the server could not find the requested resource",
            },
        }
    )
    monkeypatch.setattr(cli, "make_kube_api", lambda context: api)
    result = CliRunner().invoke(cli.app, ["scale", "dask", "--min", "1", "--max", "3"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: dask: not deployed (no daskautoscalers in namespace qframe)")


def _dask_autoscaler() -> dict[str, Any]:
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskAutoscaler",
        "metadata": {"name": "qframe-dask", "namespace": "qframe"},
        "spec": {"cluster": "qframe-dask", "minimum": 1, "maximum": 4},
    }


def test_scale_dask_patches_the_autoscaler_and_prints_the_config_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    path = "/apis/kubernetes.dask.org/v1/namespaces/qframe/daskautoscalers"
    api = RecordedKubeApi(
        {
            "GET /api/v1/namespaces/qframe": {"status": 200, "body": {"metadata": {"name": "qframe"}}},
            f"GET {path}": {"status": 200, "body": {"items": [_dask_autoscaler()]}},
            f"PATCH {path}/qframe-dask": {"status": 200, "body": _dask_autoscaler()},
        }
    )
    monkeypatch.setattr(cli, "make_kube_api", lambda context: api)
    result = CliRunner().invoke(cli.app, ["scale", "dask", "--max", "10"])
    assert result.exit_code == 0, result.output
    assert api.requests[-1] == (f"PATCH {path}/qframe-dask", {"spec": {"minimum": 1, "maximum": 10}})
    assert "pulumi config set --path 'dask.maxWorkers' 10" in result.stdout
    assert "dask.minWorkers" not in result.stdout


def test_scale_refuses_bad_bounds_before_touching_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    api = RecordedKubeApi({})
    monkeypatch.setattr(cli, "make_kube_api", lambda context: api)
    result = CliRunner().invoke(cli.app, ["scale", "ray", "--min", "5", "--max", "2"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --min 5 is above --max 2; make --min at most --max"
    assert api.requests == []


def test_logs_of_a_service_not_deployed(monkeypatch: pytest.MonkeyPatch) -> None:
    selector = "app.kubernetes.io/name in (kuberay-operator)"
    pods = request_key("GET", "/api/v1/namespaces/qframe/pods", [("labelSelector", selector)])
    api = RecordedKubeApi(
        {
            "GET /api/v1/namespaces/qframe": {"status": 200, "body": {"metadata": {"name": "qframe"}}},
            pods: {"status": 200, "body": {"items": []}},
        }
    )
    monkeypatch.setattr(cli, "make_kube_api", lambda context: api)
    result = CliRunner().invoke(cli.app, ["logs", "ray-operator"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ray-operator: not deployed (no pods in namespace qframe)")
