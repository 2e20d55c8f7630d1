"""The rules as pulumi-policy objects, every one MANDATORY (a violation stops preview and up).

The stack's environment reaches ``rds-backups-off-dev`` as that policy's config (``environment``):
``make up``/``make preview`` write it from the validated stack config into a --policy-pack-config
file. Without it the environment is unknown and judged like production.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from .model import Context, Environment, Resource, ResourceCheck, Rule, StackCheck
from .rules import RULES

PACK_NAME = "qframe-platform"
ENVIRONMENT_SCHEMA = PolicyConfigSchema(
    properties={
        "environment": {"type": "string", "enum": [e.value for e in Environment if e is not Environment.UNKNOWN]}
    }
)


def context_from_config(config: Mapping[str, Any] | None) -> Context:
    value = (config or {}).get("environment")
    try:
        return Context(environment=Environment(value)) if value else Context()
    except ValueError:
        return Context()


def _resource_policy(rule: Rule, check: ResourceCheck) -> ResourceValidationPolicy:

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in rule.types:
            return
        resource = Resource(args.resource_type, args.name, args.props, args.urn)
        for message in check(resource, context_from_config(args.get_config())):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=rule.name,
        description=rule.description,
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=validate,
        config_schema=ENVIRONMENT_SCHEMA if rule.uses_environment else None,
    )


def _stack_policy(rule: Rule, stack_check: StackCheck) -> StackValidationPolicy:

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources: Sequence[Resource] = [
            Resource(
                r.resource_type,
                r.name,
                r.props,
                r.urn,
                {key: [dep.urn for dep in deps] for key, deps in r.property_dependencies.items()},
            )
            for r in args.resources
        ]
        for finding in stack_check(resources, context_from_config(args.get_config())):
            report_violation(finding.message, finding.urn or None)

    return StackValidationPolicy(
        name=rule.name,
        description=rule.description,
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=validate,
        config_schema=ENVIRONMENT_SCHEMA if rule.uses_environment else None,
    )


def policies(rules: Sequence[Rule] = RULES) -> list[Policy]:
    built: list[Policy] = []
    for rule in rules:
        if rule.stack_check is not None:
            built.append(_stack_policy(rule, rule.stack_check))
        elif rule.check is not None:
            built.append(_resource_policy(rule, rule.check))
    return built
