"""KMS key references from config: a key ARN is used as given, an alias is resolved to its key's ARN.

Config accepts a key ARN, an alias ARN or an alias name (``alias/<name>``; infra/config.py checks
the shape). IAM evaluates ``kms:*`` actions against the key's ARN, never an alias, so every policy
and the EKS encryption config take the ARN this returns: for an alias, the ``aws.kms.get_alias``
invoke's ``target_key_arn``, which runs with the component's AWS provider (its region).
"""

from __future__ import annotations

import re

import pulumi
import pulumi_aws as aws

from infra.components.aws import invoke_parent

ALIAS_INVOKE = "aws:kms/getAlias:getAlias"
_ALIAS = re.compile(r"^(?:arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:)?(alias/[A-Za-z0-9/_-]+)$")


def alias_name(ref: str) -> str | None:
    """``alias/<name>`` when ``ref`` is an alias (by name or ARN), else ``None`` (a key ARN)."""
    match = _ALIAS.fullmatch(ref)
    return match.group(1) if match is not None else None


def resolved_key_arn(ref: str, *, parent: pulumi.Resource) -> pulumi.Output[str]:
    """The key ARN ``ref`` names: itself, or the target of the alias it names."""
    alias = alias_name(ref)
    if alias is None:
        return pulumi.Output.from_input(ref)
    found = aws.kms.get_alias_output(name=alias, opts=invoke_parent(parent))
    return found.target_key_arn
