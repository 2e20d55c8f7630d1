"""The stack files the tests run the program over: the real ones and the happy fixtures."""

from __future__ import annotations

from pathlib import Path

from infra.config import parse_raw_config
from infra.offline import REPO_ROOT, load_stack_file, stack_name_of
from infra.program import not_yet_deployable


def happy_stack_files() -> list[Path]:
    return sorted(REPO_ROOT.glob("Pulumi.*.yaml")) + sorted((REPO_ROOT / "tests/fixtures/stacks").glob("*.happy.yaml"))


def _pending(path: Path) -> list[str]:
    return not_yet_deployable(parse_raw_config(load_stack_file(path), stack=stack_name_of(path)))


def deployable_stack_files() -> list[Path]:
    """Happy stacks the program can deploy today (the AWS variants arrive with their issue)."""
    return [p for p in happy_stack_files() if not _pending(p)]


def pending_stack_files() -> list[Path]:
    return [p for p in happy_stack_files() if _pending(p)]
