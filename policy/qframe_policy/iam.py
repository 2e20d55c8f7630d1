"""IAM: no wildcard actions and no wildcard resources in what a policy allows.

Refused in every ``Allow`` statement of an identity policy (``aws.iam.Policy``, ``RolePolicy``,
``UserPolicy``, ``GroupPolicy`` and a Role's ``inline_policies``):

- an Action containing ``*`` (``*``, ``s3:*``, ``s3:Get*``) and any ``NotAction`` (allows all but a list);
- a Resource that is ``*``, or an ARN whose resource part is ``*`` or a bare ``<type>/*`` / ``<type>:*``
  (every resource of a kind, e.g. ``arn:aws:kms:eu-west-1:1:key/*``), or an S3 ARN whose bucket
  name has a ``*``; and any ``NotResource``.

One exception, because AWS leaves no other choice: Resource ``*`` is accepted in a statement whose
every action is in ``STAR_ONLY_ACTIONS``, actions the AWS Service Authorization Reference lists
without any resource type (they are authorized only on ``*``, e.g. ``ec2:DescribeImages``). A
statement mixing such an action with one that can be scoped (``eks:DescribeNodegroup``) is refused.

Allowed: object ARNs under one named bucket (``arn:aws:s3:::bucket/*``, ``arn:aws:s3:::bucket/prefix/*``),
``*`` inside Condition values, and ``Deny`` statements (a broad deny only narrows). Trust policies
(``assume_role_policy``) name principals, not resources, and are not judged here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .model import Context, Resource, as_list, as_map, policy_document, statements

POLICY_TYPES = frozenset(
    {
        "aws:iam/policy:Policy",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/userPolicy:UserPolicy",
        "aws:iam/groupPolicy:GroupPolicy",
    }
)
ROLE = "aws:iam/role:Role"

# Actions with no resource-level permissions (AWS authorizes them only on "*"); extend with care,
# each entry checked against the Service Authorization Reference.
STAR_ONLY_ACTIONS = frozenset(
    {
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:DescribeLaunchConfigurations",
        "autoscaling:DescribeScalingActivities",
        "autoscaling:DescribeTags",
        "ec2:DescribeImages",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:GetInstanceTypesFromInstanceRequirements",
        "ecr:GetAuthorizationToken",
    }
)
TYPES = POLICY_TYPES | {ROLE}


def wildcard_resource(resource: str) -> bool:
    if resource == "*":
        return True
    if not resource.startswith("arn:"):
        return "*" in resource
    fields = resource.split(":", 5)
    if len(fields) < 6:
        return True
    service, rest = fields[2], fields[5]
    if service == "s3":
        return "*" in rest.split("/", 1)[0]
    head = rest.split("/", 1)[0].split(":", 1)[0]
    return rest == "*" or "*" in head or rest in (f"{head}/*", f"{head}:*")


def _documents(resource: Resource) -> Iterator[tuple[str, Any]]:
    if resource.type == ROLE:
        for inline in as_list(resource.props.get("inlinePolicies")):
            yield f"inline policy {as_map(inline).get('name')!r}", as_map(inline).get("policy")
    else:
        yield "policy", resource.props.get("policy")


def check_no_wildcards(resource: Resource, context: Context) -> list[str]:
    found = []
    for where, raw in _documents(resource):
        document = policy_document(raw)
        if document is None:
            found.append(
                f"IAM {resource.type.rsplit(':', 1)[-1]} '{resource.name}': {where} is not a JSON policy document"
            )
            continue
        for index, statement in enumerate(statements(document)):
            if statement.get("Effect") != "Allow":
                continue
            sid = statement.get("Sid")
            at = f"IAM {resource.type.rsplit(':', 1)[-1]} '{resource.name}' {where} statement {sid or index!r}"
            actions = [str(a) for a in as_list(statement.get("Action")) if "*" in str(a)]
            if actions:
                found.append(f"{at}: Action {actions} has a wildcard; list the exact actions")
            if "NotAction" in statement:
                found.append(f"{at}: NotAction allows every other action; list the exact actions in Action")
            resources = [str(r) for r in as_list(statement.get("Resource")) if wildcard_resource(str(r))]
            all_actions = {str(a) for a in as_list(statement.get("Action"))}
            if resources == ["*"] and all_actions and all_actions <= STAR_ONLY_ACTIONS:
                resources = []
            if resources:
                scoped = sorted(all_actions - STAR_ONLY_ACTIONS)
                mixed = "*" in resources and all_actions & STAR_ONLY_ACTIONS
                hint = f" (only these can be scoped, give them their own statement: {scoped})" if mixed else ""
                found.append(f"{at}: Resource {resources} is a wildcard{hint}; name the exact ARNs")
            if "NotResource" in statement:
                found.append(f"{at}: NotResource allows every other resource; name the exact ARNs in Resource")
    return found
