"""The real Pulumi CLI runs the pack offline: a bad program is stopped, naming each broken rule.

The program's Kubernetes provider renders YAML into a directory instead of talking to a cluster, so
these are real `pulumi preview` / `pulumi up` runs (engine, the pinned language host and kubernetes
plugin, the analyzer started from policy/analyzer out of the .venv) with no cluster.
tests/e2e/test_policy_pack.py previews the same program against the local node.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.policy_cli import BAD_PROGRAM_VIOLATIONS, run_with_pack

pytestmark = pytest.mark.policy

PACK = "qframe-platform@v0.1.0"


def test_bad_program_preview_is_stopped_by_every_broken_rule(tmp_path: Path) -> None:
    proc = run_with_pack(tmp_path, variant="bad", render_dir=tmp_path / "rendered")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert f"❌ {PACK}" in output, output
    for rule, message in BAD_PROGRAM_VIOLATIONS.items():
        assert f"[mandatory]  {rule}" in output, f"{rule} not reported:\n{output}"
        assert message in output, output


def test_up_without_preview_creates_nothing_that_breaks_a_rule(tmp_path: Path) -> None:
    """make up runs `pulumi up --skip-preview`: the pack must stop the update itself, before any object is made."""
    rendered = tmp_path / "rendered"
    proc = run_with_pack(tmp_path, variant="bad", command="up", render_dir=rendered)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    # The update stops at the first resource the pack refuses; which one comes first varies.
    assert any(f"[mandatory]  {rule}" in output for rule in BAD_PROGRAM_VIOLATIONS), output
    assert sorted(p.name for p in rendered.rglob("*.yaml")) == [], output


@pytest.mark.parametrize("command", ["preview", "up"])
def test_good_twin_passes(tmp_path: Path, command: str) -> None:
    rendered = tmp_path / "rendered"
    proc = run_with_pack(tmp_path, variant="good", command=command, render_dir=rendered)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert f"✅ {PACK}" in output, output
    assert "[mandatory]" not in output, output
    if command == "up":
        assert sorted(p.name for p in rendered.rglob("*.yaml")) == [
            "apps_v1-deployment-default-policy-web.yaml",
            "v1-configmap-default-policy-settings.yaml",
        ]
