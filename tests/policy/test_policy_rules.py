"""Every rule of the policy pack on its passing and failing fixtures, and the stacks under mocks.

Fixtures are data (tests/fixtures/policy/rules/<rule>.<pass|fail>.<case>.yaml): the resources as the
engine hands them to an analyzer (type, logical name, camelCase input properties), optionally the
stack's environment, and the exact violation messages expected ([] for a pass fixture).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from qframe_policy.model import Context, Environment, Resource
from qframe_policy.pack import policies
from qframe_policy.rules import RULES, RULES_BY_NAME

from infra.config import parse_raw_config
from infra.offline import REPO_ROOT, load_stack_file, run_program, stack_name_of
from tests.harness.stacks import happy_stack_files
from tools.devstack.paths import StateDirs
from tools.devstack.pulumi_cli import ENVIRONMENT_POLICY, PulumiWorkspace, policy_config

pytestmark = pytest.mark.policy

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "policy" / "rules"
FIXTURE_FILES = sorted(FIXTURES.glob("*.yaml"))


def fixture_parts(path: Path) -> tuple[str, str, str]:
    rule, kind, case = path.name.removesuffix(".yaml").split(".")
    return rule, kind, case


def resources_of(document: Mapping[str, Any]) -> list[Resource]:
    return [
        Resource(r["type"], r["name"], r["props"], r.get("urn", ""), r.get("dependencies", {}))
        for r in document["resources"]
    ]


def context_of(document: Mapping[str, Any]) -> Context:
    environment = document.get("environment")
    return Context(Environment(environment)) if environment else Context()


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name.removesuffix(".yaml"))
def test_rule_fixture(path: Path) -> None:
    rule_name, kind, _ = fixture_parts(path)
    document = yaml.safe_load(path.read_text())
    findings = RULES_BY_NAME[rule_name].run(resources_of(document), context_of(document))
    messages = [finding.message for finding in findings]
    assert messages == document["violations"]
    if kind == "pass":
        assert messages == []
    else:
        assert messages, f"{path.name} is a failing fixture but {rule_name} found nothing"
        names = {r["name"] for r in document["resources"]} | {
            str((r["props"].get("metadata") or {}).get("name")) for r in document["resources"]
        }
        for message in messages:
            assert any(f"'{name}'" in message for name in names), f"message names no resource: {message}"
            assert "; " in message, f"message says no fix: {message}"


def test_every_rule_has_a_passing_and_a_failing_fixture() -> None:
    kinds: dict[str, set[str]] = {rule.name: set() for rule in RULES}
    for path in FIXTURE_FILES:
        rule_name, kind, _ = fixture_parts(path)
        assert rule_name in kinds, f"{path.name} names no rule of the pack ({sorted(kinds)})"
        assert kind in ("pass", "fail"), f"{path.name}: the second part must be pass or fail"
        kinds[rule_name].add(kind)
    missing = {name: {"pass", "fail"} - found for name, found in kinds.items() if found != {"pass", "fail"}}
    assert missing == {}, (
        f"rules without fixtures (add tests/fixtures/policy/rules/<rule>.<kind>.<case>.yaml): {missing}"
    )


def test_every_policy_is_mandatory_and_wired_to_its_rule() -> None:
    built = policies()
    assert [p.name for p in built] == [rule.name for rule in RULES]
    for policy, rule in zip(built, RULES, strict=True):
        assert policy.enforcement_level is EnforcementLevel.MANDATORY, policy.name
        expected = StackValidationPolicy if rule.stack_check is not None else ResourceValidationPolicy
        assert isinstance(policy, expected), policy.name
        assert (policy.config_schema is not None) == rule.uses_environment, policy.name


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def _validate_resource(name: str, resource: Resource, config: Mapping[str, Any] | None) -> list[str]:
    policy = next(p for p in policies() if p.name == name)
    assert isinstance(policy, ResourceValidationPolicy)
    reported: list[str] = []
    args = ResourceValidationArgs(resource.type, resource.props, resource.urn, resource.name, _options(), None, config)

    def report(message: str, urn: str | None = None) -> None:
        reported.append(message)

    policy.validate(args, report)
    return reported


def test_environment_reaches_the_backup_rule_through_policy_config() -> None:
    instance = Resource("aws:rds/instance:Instance", "db", {"storageEncrypted": True, "backupRetentionPeriod": 0})
    assert _validate_resource("rds-backups-off-dev", instance, {"environment": "dev"}) == []
    prod = _validate_resource("rds-backups-off-dev", instance, {"environment": "prod"})
    assert prod == [
        "RDS instance 'db': backupRetentionPeriod is 0 with environment 'prod'; set backup_retention_period "
        "to 1..35 days (only environment 'dev' may run without backups)"
    ]
    # No config (a bare `pulumi preview --policy-pack`): judged like production.
    assert _validate_resource("rds-backups-off-dev", instance, None) == [prod[0].replace("'prod'", "'unknown'")]
    # Other types are not this rule's business.
    assert _validate_resource("rds-backups-off-dev", Resource("aws:s3/bucket:Bucket", "b", {}), None) == []


def test_stack_rules_tie_companions_to_buckets_by_urn() -> None:
    """The engine's property dependencies reach the stack rules (an auto-named bucket's companions)."""
    policy = next(p for p in policies() if p.name == "s3-bucket-versioned")
    assert isinstance(policy, StackValidationPolicy)
    bucket = PolicyResource(
        "aws:s3/bucket:Bucket", {"bucketPrefix": "x-"}, "urn:b", "b", _options(), None, None, [], {}
    )
    versioning = PolicyResource(
        "aws:s3/bucketVersioning:BucketVersioning",
        {"bucket": "x-123", "versioningConfiguration": {"status": "Enabled"}},
        "urn:v",
        "v",
        _options(),
        None,
        None,
        [bucket],
        {"bucket": [bucket]},
    )
    reported: list[tuple[str, str | None]] = []

    def report(message: str, urn: str | None = None) -> None:
        reported.append((message, urn))

    policy.validate(StackValidationArgs([bucket, versioning]), report)
    assert reported == []
    policy.validate(StackValidationArgs([bucket]), report)
    assert reported == [
        (
            "S3 bucket resource 'b' is not versioned; add an aws.s3.BucketVersioning for it with "
            "versioning_configuration.status 'Enabled'",
            "urn:b",
        )
    ]


def _stack_environment(stack_file: Path) -> Environment:
    return Environment(parse_raw_config(load_stack_file(stack_file), stack=stack_name_of(stack_file)).environment)


@pytest.mark.parametrize("stack_file", happy_stack_files(), ids=lambda p: p.name)
def test_stack_passes_the_pack_under_mocks(stack_file: Path) -> None:
    """Every resource the program registers for a stack (the aws stack included) passes every rule."""
    run = run_program(stack_file)
    resources = [Resource(r.type, r.name, r.inputs, r.urn) for r in run.resources]
    context = Context(_stack_environment(stack_file))
    found = [f"{rule.name}: {f.message}" for rule in RULES for f in rule.run(resources, context)]
    assert found == []


def test_aws_stack_is_judged_on_what_the_rules_look_at() -> None:
    """The pass above is not vacuous: the aws stack has every kind of resource the pack judges."""
    run = run_program(REPO_ROOT / "Pulumi.aws.yaml")
    judged = {t for rule in RULES for t in rule.types}
    types = {r.type for r in run.resources}
    assert {
        "aws:s3/bucket:Bucket",
        "aws:rds/instance:Instance",
        "aws:iam/policy:Policy",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:eks/cluster:Cluster",
        "kubernetes:apps/v1:Deployment",
        "kubernetes:kubernetes.dask.org/v1:DaskCluster",
        "kubernetes:ray.io/v1:RayCluster",
    } <= types & (judged | {"aws:s3/bucket:Bucket"})
    assert _stack_environment(REPO_ROOT / "Pulumi.aws.yaml") is Environment.PROD


def test_devstack_hands_the_stack_environment_to_the_pack() -> None:
    assert policy_config({"qframe-research:environment": "prod"}) == {ENVIRONMENT_POLICY: {"environment": "prod"}}
    # The model's default environment when the stack file does not say.
    assert policy_config({}) == {ENVIRONMENT_POLICY: {"environment": "dev"}}
    assert RULES_BY_NAME[ENVIRONMENT_POLICY].uses_environment


def test_make_up_and_preview_pass_the_pack_and_its_config(tmp_path: Path) -> None:
    """What tools/devstack adds to `pulumi up` / `pulumi preview`: the analyzer and the stack's environment."""
    workspace = PulumiWorkspace(StateDirs(tmp_path), "aws")
    args = workspace.policy_args()
    config_path = tmp_path / "policy-config.aws.json"
    assert args == ["--policy-pack", str(REPO_ROOT / "policy" / "analyzer"), "--policy-pack-config", str(config_path)]
    assert json.loads(config_path.read_text()) == {ENVIRONMENT_POLICY: {"environment": "prod"}}
    assert (REPO_ROOT / "policy" / "analyzer").stat().st_mode & 0o111, "policy/analyzer must be executable"
