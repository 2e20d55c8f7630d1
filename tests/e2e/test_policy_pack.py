"""The policy pack on the real local node: a deliberately bad stack is stopped during `pulumi preview`.

The dev stack itself came up through `make up`'s code path with the pack (the devstack fixture), so
it passed every rule; here a separate small program (tests/fixtures/policy/programs/bad: a Deployment
running as root without limits or dropped capabilities, a ConfigMap with a password) is previewed
against the same cluster with the pack and must fail naming each rule, while its fixed twin previews
cleanly. Previews only: nothing is created on the node.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import DevStack
from tests.harness.policy_cli import BAD_PROGRAM_VIOLATIONS, run_with_pack

pytestmark = pytest.mark.e2e

PACK = "qframe-platform@v0.1.0"


def test_make_up_ran_the_pack(devstack: DevStack) -> None:
    assert f"✅ {PACK}" in devstack.up_output, devstack.up_output[-4000:]


def test_bad_stack_is_stopped_by_the_pack(devstack: DevStack, tmp_path: Path) -> None:
    proc = run_with_pack(tmp_path, variant="bad", kubeconfig=devstack.kubeconfig)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert f"❌ {PACK}" in output, output
    for rule, message in BAD_PROGRAM_VIOLATIONS.items():
        assert f"[mandatory]  {rule}" in output, f"{rule} not reported:\n{output}"
        assert message in output, output


def test_good_twin_previews_against_the_node(devstack: DevStack, tmp_path: Path) -> None:
    proc = run_with_pack(tmp_path, variant="good", kubeconfig=devstack.kubeconfig)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert f"✅ {PACK}" in output, output
