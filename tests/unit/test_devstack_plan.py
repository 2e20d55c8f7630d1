"""`make plan` (`python -m tools.devstack plan`): the offline resource tree, outputs and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from infra.offline import REPO_ROOT, ProgramRun, run_program
from tools.devstack.cli import app
from tools.devstack.plan import output_lines, resource_tree

pytestmark = pytest.mark.unit


def test_plan_lists_every_resource_and_output_of_the_stack() -> None:
    expected = run_program(REPO_ROOT / "Pulumi.dev.yaml")
    result = CliRunner().invoke(app, ["plan", "--stack", "dev"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"stack dev ({len(expected.resources)} resources)" in result.output
    for resource in expected.resources:
        assert f"{resource.name} {resource.type}" in result.output
    for key in expected.outputs:
        assert f"output {key} = " in result.output


def test_plan_refuses_an_invalid_stack_file_with_the_key(tmp_path: Path) -> None:
    stack_file = tmp_path / "Pulumi.broken.yaml"
    stack_file.write_text("config:\n  qframe-research:noSuchSection: 1\n")
    result = CliRunner().invoke(app, ["plan", "--stack-file", str(stack_file)], terminal_width=200)
    assert result.exit_code == 1
    assert "Stack config of stack 'broken' is invalid" in result.output
    assert "qframe-research:noSuchSection" in result.output


def test_plan_without_a_stack_file_says_how_to_fix_it() -> None:
    result = CliRunner().invoke(app, ["plan", "--stack", "no-such-stack"], terminal_width=200)
    assert result.exit_code == 2
    assert "no stack file" in result.output
    assert "Pulumi.no-such-stack.yaml" in result.output


def test_secret_outputs_are_masked_and_shown_as_masked() -> None:
    run = ProgramRun(stack="s", outputs={"endpoint": "http://minio:9000", "token": "hunter2"}, secret_outputs={"token"})
    console = Console(record=True, width=200)
    for line in output_lines(run):
        console.print(line)
    text = console.export_text()
    assert "output endpoint = 'http://minio:9000'" in text
    assert "output token = [secret]" in text
    assert "hunter2" not in text


def test_plan_prints_the_same_text_whatever_order_the_program_registered_in() -> None:
    run = run_program(REPO_ROOT / "Pulumi.dev.yaml")
    # The same run with resources and output map keys in reverse order, as another run may produce.
    shuffled = ProgramRun(
        stack=run.stack,
        resources=list(reversed(run.resources)),
        outputs={k: dict(reversed(v.items())) if isinstance(v, dict) else v for k, v in reversed(run.outputs.items())},
        secret_outputs=set(run.secret_outputs),
    )

    def text(one: ProgramRun) -> str:
        console = Console(record=True, width=200)
        console.print(resource_tree(one))
        for line in output_lines(one):
            console.print(line)
        return console.export_text()

    assert text(shuffled) == text(run)
    assert text(run).count("\n") > len(run.resources)  # the tree and the outputs were printed
