"""The whole Pulumi program under mocks, for every stack file: structure rules over all resources."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from infra.config import PROJECT
from infra.offline import DYNAMIC_RESOURCE, MOCK_SECRET_PREFIX, REPO_ROOT, ProgramRun, run_program
from tests.harness.stacks import happy_stack_files
from tools.devstack.plan import resource_tree

pytestmark = pytest.mark.unit

STACK_FILES = happy_stack_files()
COMPONENT_TYPE = re.compile(r"^qframe:[a-z]+:[A-Z][A-Za-z]+$")
# Components the Kubernetes provider itself implements: the operators' upstream CRD files are applied
# through yaml/v2 ConfigFile so the program never parses or retypes them.
PROVIDER_COMPONENTS = frozenset({"kubernetes:yaml/v2:ConfigFile"})


@pytest.fixture(scope="module", params=STACK_FILES, ids=lambda p: p.name)
def run(request: pytest.FixtureRequest) -> ProgramRun:
    path: Path = request.param
    return run_program(path)


def test_program_registers_resources(run: ProgramRun) -> None:
    assert run.resources, "the program registered nothing"


def test_every_component_follows_the_type_token_convention(run: ProgramRun) -> None:
    components = [r for r in run.resources if not r.custom and r.type not in PROVIDER_COMPONENTS]
    assert components
    for component in components:
        assert COMPONENT_TYPE.match(component.type), component.type


def test_every_custom_resource_lives_inside_a_component(run: ProgramRun) -> None:
    for resource in run.resources:
        if not resource.custom or resource.type.startswith("pulumi:providers:"):
            continue
        parents = list(run.ancestors(resource))
        assert parents, f"{resource.type} {resource.name} is registered at stack level"
        assert resource.name.startswith(f"{parents[0].name}-"), (
            f"child {resource.name!r} should be named '<component>-<role>' after {parents[0].name!r}"
        )


def test_kubernetes_resources_use_the_explicit_provider(run: ProgramRun) -> None:
    provider = run.one("pulumi:providers:kubernetes")
    for resource in run.resources:
        if resource.type.startswith("kubernetes:"):
            assert resource.provider.startswith(provider.urn), f"{resource.name} uses {resource.provider!r}"


def test_aws_resources_share_one_provider_built_by_the_program(run: ProgramRun) -> None:
    aws_resources = [r for r in run.resources if r.type.startswith("aws:")]
    providers = run.of_type("pulumi:providers:aws")
    if not aws_resources:
        assert providers == [], "an AWS provider on a stack without AWS resources"
        return
    [provider] = providers
    assert provider.parent.endswith(f"::pulumi:pulumi:Stack::{PROJECT}-{run.stack}"), (
        "components must not build providers: they inherit the program's"
    )
    for resource in aws_resources:
        assert resource.provider.startswith(provider.urn), f"{resource.name} uses {resource.provider!r}"


def test_namespace_enforces_restricted_pod_security_and_carries_labels(run: ProgramRun) -> None:
    namespace = run.one("kubernetes:core/v1:Namespace")
    labels = namespace.inputs["metadata"]["labels"]
    assert namespace.inputs["metadata"]["name"] == run.outputs["namespace"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["app.kubernetes.io/part-of"] == PROJECT
    assert labels["app.kubernetes.io/managed-by"] == "pulumi"


def test_stack_labels_reach_every_kubernetes_object() -> None:
    run = run_program(REPO_ROOT / "Pulumi.dev.yaml", overrides={"labels": {"team": "alpha", "cost-center": "q42"}})
    objects = [r for r in run.resources if r.type.startswith("kubernetes:") and "metadata" in r.inputs]
    assert objects
    for resource in objects:
        labels = resource.inputs["metadata"]["labels"]
        assert labels["team"] == "alpha"
        assert labels["cost-center"] == "q42"


def test_config_change_reaches_the_namespace_name() -> None:
    run = run_program(REPO_ROOT / "Pulumi.dev.yaml", overrides={"namespace": "research-b"})
    assert run.one("kubernetes:core/v1:Namespace").inputs["metadata"]["name"] == "research-b"
    assert run.outputs["namespace"] == "research-b"


def test_plan_tree_lists_every_resource(run: ProgramRun) -> None:
    console = Console(record=True, width=200)
    console.print(resource_tree(run))
    text = console.export_text()
    for resource in run.resources:
        assert resource.name in text


def test_generated_secrets_travel_only_in_inputs_marked_secret(run: ProgramRun) -> None:
    assert run.of_type(DYNAMIC_RESOURCE), "no generated secrets: the check would prove nothing"
    carriers = 0
    for resource in run.resources:
        if resource.type == DYNAMIC_RESOURCE:
            continue
        for key, value in resource.inputs.items():
            if MOCK_SECRET_PREFIX in json.dumps(value, default=str):
                carriers += 1
                assert key in resource.secret_inputs, f"{resource.type} {resource.name}: input {key} is not secret"
                # Helm values end up in release Secrets readable by anyone with helm access.
                assert resource.type != "kubernetes:helm.sh/v3:Release", f"{resource.name} got a secret in its values"
    assert carriers, "no resource received a generated secret"


def test_outputs_holding_secrets_are_marked_secret(run: ProgramRun) -> None:
    for key, value in run.outputs.items():
        if MOCK_SECRET_PREFIX in json.dumps(value, default=str):
            assert key in run.secret_outputs, key


def test_the_offline_run_works_after_asyncio_run_cleared_the_event_loop() -> None:
    # asyncio.run (used by async research APIs in the same test session) leaves the thread with no loop.
    async def nothing() -> int:
        return 1

    assert asyncio.run(nothing()) == 1
    run = run_program(REPO_ROOT / "Pulumi.dev.yaml")
    assert run.resources
