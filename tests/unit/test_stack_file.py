"""The strict stack-file reader, and `make up` refusing a malformed stack file before any cluster starts.

The fixtures in tests/fixtures/stacks/file.error.*.yaml cover each problem's message; these tests
cover what the fixtures cannot: the devstack entry point and the values the reader hands on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from infra.config import StackConfigError
from infra.offline import load_stack_file
from infra.stack_file import read_stack_file
from tools.devstack import cli
from tools.devstack.paths import StateDirs

pytestmark = pytest.mark.unit

DUPLICATE = """config:
  qframe-research:kafka:
    replicas: 3
    replicas: 1
"""


def test_a_valid_file_is_returned_as_written(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("config:\n  qframe-research:kafka:\n    replicas: 3\n  aws:region: eu-west-1\n")
    assert read_stack_file(path, stack="dev") == {"qframe-research:kafka": {"replicas": 3}, "aws:region": "eu-west-1"}


def test_an_empty_file_or_config_is_no_config(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    for text in ("", "config:\n", "encryptionsalt: v1:abc\n"):
        path.write_text(text)
        assert read_stack_file(path, stack="dev") == {}


def test_duplicate_keys_name_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(DUPLICATE)
    with pytest.raises(StackConfigError, match=r"qframe-research:kafka\.replicas: is given twice \(lines 3 and 4\)"):
        read_stack_file(path, stack="dev")


def test_duplicates_inside_list_items_are_found(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("config:\n  qframe-research:kafka:\n    topics:\n      - name: a\n        name: b\n")
    with pytest.raises(StackConfigError, match=r"qframe-research:kafka\.topics\[0\]\.name: is given twice"):
        read_stack_file(path, stack="dev")


def test_secure_values_of_providers_are_left_to_them_offline(tmp_path: Path) -> None:
    # The program never reads another namespace's key, and offline nothing can decrypt it.
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("config:\n  aws:secretKey:\n    secure: v1:abc\n  qframe-research:namespace: qframe\n")
    assert load_stack_file(path) == {"qframe-research:namespace": "qframe"}


def test_make_up_refuses_a_malformed_stack_file_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Pulumi.broken.yaml").write_text(DUPLICATE)
    monkeypatch.setattr(cli, "REPO_ROOT", tmp_path)

    def must_not_run() -> None:
        raise AssertionError("a cluster step ran for a malformed stack file")

    monkeypatch.setattr(StateDirs, "default", must_not_run)
    with pytest.raises(typer.Exit) as caught:
        cli.up(stack="broken", node_only=False)
    assert caught.value.exit_code == 2


def test_make_plan_prints_a_malformed_stack_file_as_an_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.broken.yaml"
    path.write_text(DUPLICATE)
    with pytest.raises(typer.Exit) as caught:
        cli.plan(stack="broken", stack_file=path)
    assert caught.value.exit_code == 1
