from __future__ import annotations

import pulumi
import pytest

from infra.offline import DYNAMIC_RESOURCE, MOCK_SECRET_PREFIX, REPO_ROOT, run_program
from infra.passwords import ALPHABET, GeneratedPassword, _PasswordProvider, generate_password

pytestmark = pytest.mark.unit


def test_generated_passwords_are_long_random_and_uri_safe() -> None:
    values = {generate_password(32) for _ in range(50)}
    assert len(values) == 50
    assert all(len(v) == 32 and set(v) <= set(ALPHABET) for v in values)


def test_short_passwords_are_refused() -> None:
    with pytest.raises(ValueError, match="below 16"):
        generate_password(8)


def test_provider_keeps_the_password_unless_the_length_changes() -> None:
    provider = _PasswordProvider()
    created = provider.create({"length": 24})
    assert created.outs is not None
    assert len(created.outs["result"]) == 24
    same = provider.diff(created.id, created.outs, {"length": 24, "result": None})
    assert same.changes is False
    longer = provider.diff(created.id, created.outs, {"length": 40, "result": None})
    assert longer.changes is True
    assert longer.replaces == ["length"]


def test_result_is_a_secret_output_under_the_harness() -> None:
    def program() -> None:
        password = GeneratedPassword("db-password", length=20)
        pulumi.export("password", password.value)

    run = run_program(REPO_ROOT / "Pulumi.dev.yaml", program=program)
    resource = run.one(DYNAMIC_RESOURCE, "db-password")
    assert "result" in resource.additional_secret_outputs
    assert run.outputs["password"] == f"{MOCK_SECRET_PREFIX}db-password"
    assert "password" in run.secret_outputs
