"""Stack config fixtures: one generated test per file in tests/fixtures/stacks/.

``<name>.happy.yaml`` must parse; ``<name>.error.<why>.yaml`` must fail before any resource is
registered, with a message naming the key given in its ``# expect-key:`` comment.
"""

from __future__ import annotations

import re
from pathlib import Path

import pulumi
import pytest

from infra.config import PROJECT, StackConfig, StackConfigError, parse_raw_config
from infra.images import image_ref
from infra.offline import REPO_ROOT, load_stack_file, run_program, stack_name_of
from infra.quantities import parse_quantity

pytestmark = pytest.mark.unit

STACKS = REPO_ROOT / "tests" / "fixtures" / "stacks"
HAPPY = sorted(STACKS.glob("*.happy.yaml"))
ERRORS = sorted(STACKS.glob("*.error.*.yaml"))
REAL_STACKS = sorted(REPO_ROOT.glob("Pulumi.*.yaml"))


def _expectations(path: Path) -> dict[str, str]:
    found = dict(re.findall(r"^# expect-(key|message): (.+)$", path.read_text(), flags=re.MULTILINE))
    assert "key" in found, f"{path.name} lacks an '# expect-key:' comment"
    return found


def test_there_are_enough_fixtures() -> None:
    assert len(HAPPY) >= 3
    assert len(ERRORS) >= 12


@pytest.mark.parametrize("path", HAPPY + REAL_STACKS, ids=lambda p: p.name)
def test_happy_stack_parses(path: Path) -> None:
    cfg = parse_raw_config(load_stack_file(path), stack=stack_name_of(path))
    assert isinstance(cfg, StackConfig)


@pytest.mark.parametrize("path", ERRORS, ids=lambda p: p.name)
def test_error_stack_is_rejected_naming_the_key(path: Path) -> None:
    expected = _expectations(path)
    with pytest.raises(StackConfigError) as caught:
        parse_raw_config(load_stack_file(path), stack=stack_name_of(path))
    message = str(caught.value)
    assert f"{expected['key']} =" in message or f"{expected['key']}:" in message, message
    if "message" in expected:
        assert expected["message"] in message, message
    assert "nothing was deployed" in message


@pytest.mark.parametrize("path", ERRORS, ids=lambda p: p.name)
def test_error_stack_registers_nothing(path: Path) -> None:
    # A problem of the file itself (YAML, duplicate keys) stops the run before the program starts;
    # a problem of the values stops the program before its first resource.
    with pytest.raises((pulumi.RunError, StackConfigError)) as caught:
        run_program(path)
    assert _expectations(path)["key"] in str(caught.value)
    assert getattr(caught.value, "program_run", None) is None or caught.value.program_run.resources == []  # type: ignore[attr-defined]


def test_dev_stack_defaults_fit_a_laptop() -> None:
    cfg = parse_raw_config(load_stack_file(REPO_ROOT / "Pulumi.dev.yaml"), stack="dev")
    assert cfg.environment == "dev"
    assert cfg.kafka.replicas == 1
    assert parse_quantity(cfg.object_store.minio.storage) <= 20 * 2**30


def test_defaults_alone_are_a_valid_dev_stack() -> None:
    cfg = StackConfig()
    assert cfg.object_store.kind == "minio"
    assert cfg.postgres.kind == "in-cluster"
    assert cfg.aws is None


def test_message_lists_every_problem_at_once() -> None:
    raw = {
        f"{PROJECT}:namespace": "Bad_NS",
        f"{PROJECT}:kafka": '{"replicas": 2}',
        f"{PROJECT}:images": '{"tags": {"kafka": "latest"}}',
    }
    with pytest.raises(StackConfigError) as caught:
        parse_raw_config(raw, stack="dev")
    message = str(caught.value)
    assert "(3 problems)" in message
    for key in ("namespace", "kafka.replicas", "images.tags.kafka"):
        assert f"{PROJECT}:{key} =" in message


def test_unknown_key_message_suggests_the_closest_key_and_lists_allowed_keys() -> None:
    with pytest.raises(StackConfigError) as caught:
        parse_raw_config({f"{PROJECT}:kafka": '{"replica": 3}'}, stack="dev")
    message = str(caught.value)
    assert "unknown key; did you mean replicas?" in message
    allowed = message.split("allowed keys here: ", 1)[1].splitlines()[0].split(", ")
    assert {"replicas", "resources", "storage", "topics"} <= set(allowed)
    assert allowed == sorted(allowed)


def test_other_namespaces_are_left_to_their_providers() -> None:
    cfg = parse_raw_config({"kubernetes:context": "kind-dev", "aws:region": "eu-west-1"}, stack="dev")
    assert cfg == StackConfig()


def test_image_references_are_built_from_registry_and_pinned_tag() -> None:
    cfg = StackConfig.model_validate(
        {
            "images": {
                "registry": "mirror.internal/qframe",
                "tags": {"kafka": "1.2.3", "tools": "sha256:" + "a" * 64},
            }
        }
    )
    assert image_ref(cfg.images, "kafka").reference == "mirror.internal/qframe/kafka:1.2.3"
    assert image_ref(cfg.images, "tools").reference == "mirror.internal/qframe/tools@sha256:" + "a" * 64
    # A digest pins the image: the chart block carries it, with no made-up tag beside it.
    assert image_ref(cfg.images, "tools").chart_values() == {
        "repository": "mirror.internal/qframe/tools",
        "tag": "",
        "digest": "sha256:" + "a" * 64,
        "pullPolicy": "IfNotPresent",
    }


def test_models_are_frozen() -> None:
    cfg = StackConfig()
    with pytest.raises(ValueError, match="frozen"):
        cfg.kafka.replicas = 99  # type: ignore[misc]
