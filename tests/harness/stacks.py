"""The stack files the tests run the program over: the real ones and the happy fixtures."""

from __future__ import annotations

from pathlib import Path

from infra.offline import REPO_ROOT


def happy_stack_files() -> list[Path]:
    return sorted(REPO_ROOT.glob("Pulumi.*.yaml")) + sorted((REPO_ROOT / "tests/fixtures/stacks").glob("*.happy.yaml"))
