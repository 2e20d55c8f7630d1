"""`qframe-ops charts` through pyhelm3 and the real, pinned helm.

`template` must produce exactly the objects the Pulumi program's offline render yields for the same
stack (tests/harness/program_objects: the program's registered helm Releases expanded by the helm
CLI), so operators and `pulumi up` share one source of values.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infra.offline import REPO_ROOT, run_program
from infra.ops import cli
from infra.ops.helm import Helm
from infra.ops.stack import stack_releases
from tests.harness.ops_fakes import load_recording, stack_as_recorded
from tests.harness.program_objects import HELM_RELEASE, expand_release
from tests.harness.security import CLUSTER_SCOPED_KINDS
from tests.harness.stacks import happy_stack_files

pytestmark = pytest.mark.charts

STACKS = [REPO_ROOT / "Pulumi.dev.yaml", *happy_stack_files()]


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    keyed = {_key(o): o for o in objects}
    assert len(keyed) == len(objects), "two rendered objects share kind and name"
    return keyed


@pytest.fixture(scope="module")
def helm() -> Helm:
    return Helm()


@pytest.mark.parametrize("stack", STACKS, ids=lambda p: p.name)
def test_template_equals_the_programs_offline_render(helm: Helm, stack: Path) -> None:
    program = {r.inputs["name"]: r for r in run_program(stack).of_type(HELM_RELEASE)}
    specs = stack_releases(stack)
    assert sorted(s.release for s in specs) == sorted(program)
    for spec in specs:
        expected = expand_release(program[spec.release])
        ours = helm.template(spec)
        for obj in ours:
            # What `helm install --namespace` does, and what the harness makes explicit the same way.
            if obj["kind"] not in CLUSTER_SCOPED_KINDS:
                obj["metadata"].setdefault("namespace", spec.namespace)
        assert ours, f"{spec.release}: nothing rendered"
        assert _by_key(ours) == _by_key(expected), spec.release


def test_cli_template_json_is_the_stack_render(helm: Helm) -> None:
    result = CliRunner().invoke(cli.app, ["charts", "template", "kafka", "--stack", "dev", "--output", "json"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    (spec,) = [s for s in stack_releases(REPO_ROOT / "Pulumi.dev.yaml") if s.release == "kafka"]
    assert items == helm.template(spec)
    kinds = {o["kind"] for o in items}
    assert {"StatefulSet", "Service", "NetworkPolicy"} <= kinds


def test_cli_template_namespace_flag_moves_every_release(helm: Helm) -> None:
    result = CliRunner().invoke(cli.app, ["charts", "template", "postgres", "-n", "elsewhere", "-o", "json"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    # The chart renders namespaced DNS names from .Release.Namespace; they follow the flag.
    assert "elsewhere" in json.dumps(items)
    assert ".qframe.svc" not in json.dumps(items)


def test_cli_lint_passes_every_chart_with_defaults_and_stack_values() -> None:
    result = CliRunner().invoke(cli.app, ["charts", "lint", "--output", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["chart"]: row for row in json.loads(result.stdout)["items"]}
    assert set(rows) == {p.parent.name for p in (REPO_ROOT / "charts").glob("*/Chart.yaml")}
    assert all(row["result"] == "ok" for row in rows.values())
    assert "dev:kafka" in rows["kafka"]["values"]


def test_lint_fails_a_broken_chart_with_helms_finding(helm: Helm, tmp_path: Path) -> None:
    chart = tmp_path / "kafka"
    shutil.copytree(REPO_ROOT / "charts" / "kafka", chart)
    shutil.copytree(REPO_ROOT / "charts" / "_shared", tmp_path / "_shared")
    (chart / "templates" / "broken.yaml").write_text("kind: ConfigMap\nmetadata:\n  name: {{ .Values.nope.deeper }}\n")
    ok, text = helm.lint(chart)
    assert not ok
    assert "[ERROR]" in text
    assert "nope" in text


def test_cli_list_names_the_release_of_each_chart() -> None:
    result = CliRunner().invoke(cli.app, ["charts", "list", "-o", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["chart"]: row for row in json.loads(result.stdout)["items"]}
    assert rows["minio"]["release_in_stack"] == ["minio (objectStore)"]
    assert rows["kafka"]["kube_version"] == ">=1.29.0-0"


def test_cli_unknown_release_is_one_line_exit_2() -> None:
    result = CliRunner().invoke(cli.app, ["charts", "template", "nosuch"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "stack dev installs no release or chart 'nosuch'" in result.stderr
    assert "kafka" in result.stderr


def test_diff_against_recorded_live_objects_shows_exactly_the_edited_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The e2e run edited the stack's LimitRange live and recorded every object the diff read."""
    api, _, argv = load_recording("diff-limitrange-edited")
    monkeypatch.setattr(cli, "make_kube_api", lambda context: api)
    stack = stack_as_recorded("diff-limitrange-edited", "dev", tmp_path)
    result = CliRunner().invoke(cli.app, [*argv, "--stack", str(stack)])
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert [(r["release"], r["object"], r["state"]) for r in document["items"]] == [
        ("tenant-baseline", "LimitRange/tenant-baseline-container-defaults", "changed")
    ]
    assert document["items"][0]["changes"] == ["spec.limits[0].default.memory: 1Gi -> live 777Mi"]
