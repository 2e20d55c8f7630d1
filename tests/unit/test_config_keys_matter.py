"""Every key of the stack model changes what the program registers, or is refused.

A key that validates but changes nothing lies to the person who sets it. This walks every leaf
of ``StackConfig`` (sections added later included), sets it to a different valid value on each
base stack below, runs the whole program under mocks and requires that some registered input,
option or stack output differs for at least one base. A perturbed value the model refuses proves
nothing and is skipped; a leaf with no accepted change fails the test and names the key.
"""

from __future__ import annotations

import copy
import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from infra.config import (
    PROJECT,
    StackConfig,
    StackConfigError,
    decode_value,
    key_path,
    model_of,
    parse_raw_config,
    variant_keys,
)
from infra.offline import REPO_ROOT, ProgramRun, config_text, load_stack_file, run_program, stack_name_of

pytestmark = pytest.mark.unit

STACKS = REPO_ROOT / "tests" / "fixtures" / "stacks"
# Together these take every branch of the program: MinIO + in-cluster Postgres, S3 + RDS, a
# protected multi-broker stack, and S3 + RDS on an EKS cluster the stack creates (with ECR).
BASES: tuple[Path, ...] = (
    REPO_ROOT / "Pulumi.dev.yaml",
    STACKS / "aws.happy.yaml",
    STACKS / "large.happy.yaml",
    STACKS / "aws-eks.happy.yaml",
)

Path_ = tuple[str | int, ...]

# Valid replacement values for string and list leaves, by dotted path (list items as [0]) or by
# the last key. Booleans, integers, Literal choices and maps are perturbed generically. A new
# string key needs an entry here: the test names it when one is missing.
SAMPLES: dict[str, list[Any]] = {
    "namespace": ["research-b"],
    "images.registry": ["mirror.example/qframe"],
    "objectStore.buckets.dataLake": ["other-data-lake"],
    "objectStore.buckets.mlflowArtifacts": ["other-mlflow-artifacts"],
    "objectStore.buckets.scratchPrefix": ["tmp/"],
    "objectStore.s3.kmsKeyArn": ["arn:aws:kms:eu-west-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab"],
    "objectStore.s3.principal.name": ["another-role"],
    "postgres.rds.instanceClass": ["db.r6g.xlarge"],
    "postgres.rds.engineVersion": ["17.2"],
    "postgres.rds.subnetIds": [["subnet-0a1b2c3d4e5f60718", "subnet-0a1b2c3d4e5f60719", "subnet-0a1b2c3d4e5f6071a"]],
    "postgres.rds.securityGroupIds": [["sg-0a1b2c3d4e5f60718", "sg-0a1b2c3d4e5f60719"]],
    "postgres.rds.caBundle": ["-----BEGIN CERTIFICATE-----\nMIIBmock\n-----END CERTIFICATE-----\n"],
    "postgres.inCluster.podNetworks": [["10.42.0.0/16"]],
    "kafka.topics[0].name": ["trades"],
    "kafka.tlsSecret": ["kafka-tls"],
    "aws.region": ["us-east-1"],
    "aws.kmsKeyArn": ["arn:aws:kms:eu-west-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab"],
    "aws.network.cidr": ["10.30.0.0/16"],
    "aws.eks.version": ["1.33"],
    "aws.eks.clusterAutoscaler.imageTag": ["v1.32.1"],
    "aws.eks.endpointPublicAccessCidrs": [[], ["198.51.100.0/24"]],
    "aws.eks.logging": [["api", "audit"]],
    "aws.eks.nodeGroups.gpu.instanceTypes": [["g6.xlarge"]],
    "instanceTypes": [["m7i.large"]],
    "mlflow.auth.adminUsername": ["root"],
    "mlflow.ingress.host": ["tracking.example.com"],
    "mlflow.ingress.tlsSecret": ["tracking-tls"],
    "mlflow.ingress.className": ["traefik"],
    "jupyterhub.auth.adminUsers": [["root", "alice"]],
    "jupyterhub.auth.allowedUsers": [["carol"]],
    "jupyterhub.auth.oauth.secretName": ["other-oauth-client"],
    "jupyterhub.auth.oauth.callbackUrl": ["https://notebooks.example.com/hub/oauth_callback"],
    "jupyterhub.auth.oauth.allowedGroups": [["risk"]],
    "jupyterhub.auth.oauth.authorizeUrl": ["https://login.example.com/authorize"],
    "jupyterhub.auth.oauth.tokenUrl": ["https://login.example.com/token"],
    "jupyterhub.auth.oauth.userdataUrl": ["https://login.example.com/userinfo"],
    "jupyterhub.auth.oauth.usernameClaim": ["sub"],
    "jupyterhub.auth.oauth.groupsClaim": ["roles"],
    "jupyterhub.profiles[0].slug": ["tiny"],
    "jupyterhub.profiles[0].displayName": ["Tiny"],
    "jupyterhub.profiles[0].gpu.tolerationKey": ["example.com/accelerator"],
    "jupyterhub.proxyResources.requests.cpu": ["100m"],
    "jupyterhub.ingress.host": ["lab.example.com"],
    "jupyterhub.ingress.tlsSecret": ["lab-tls"],
    "jupyterhub.ingress.className": ["traefik"],
    "ray.workerGroups[0].name": ["highmem"],
    "ray.workerGroups[0].gpu.tolerationKey": ["example.com/accelerator"],
    "cpuLimit": ["3"],
    "memoryLimit": ["9Gi"],
    "userStorage": ["30Gi"],
    # by last key
    "cpu": ["50m", "3"],
    "memory": ["128Mi", "3Gi"],
    "storage": ["30Gi"],
    "tags": ["9.9.9"],  # images.tags.<image>; aws.tags is a map and perturbed generically
}


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    return model_of(annotation) if typing.get_origin(annotation) is list else None


def leaves(model: type[BaseModel], prefix: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """Every leaf key of the model as a camelCase path, with its annotation."""
    for name, field in model.model_fields.items():
        path = (*prefix, field.alias or name)
        item = _list_item_model(field.annotation)
        sub = model_of(field.annotation)
        if item is not None:
            yield from leaves(item, (*path, 0))
        elif sub is not None:
            yield from leaves(sub, path)
        else:
            yield path, field.annotation


def dotted(path: Path_) -> str:
    return key_path(path).removeprefix(f"{PROJECT}:")


def _current(cfg: StackConfig, path: Path_) -> tuple[bool, Any]:
    node: Any = cfg.model_dump(mode="json", by_alias=True)
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or len(node) <= part:
                return False, None
            node = node[part]
        else:
            if not isinstance(node, dict) or part not in node:
                return False, None
            node = node[part]
    return True, node


def _literal_choices(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return ()


def candidates(path: Path_, annotation: Any, current: Any) -> list[Any]:
    choices = _literal_choices(annotation)
    if choices:
        return [c for c in choices if c != current]
    if isinstance(current, bool):
        return [not current]
    if isinstance(current, int):
        return [current + 1, current - 1, current + 2, current - 2, current * 2 + 1]
    if isinstance(current, dict):
        return [{**current, "perturbed": "yes"}]
    key = dotted(path)
    for lookup in (key, str(path[-1]), str(path[-2]) if len(path) > 1 else ""):
        if lookup in SAMPLES:
            return [v for v in SAMPLES[lookup] if v != current]
    if current is None and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if args == [int] or (
            args and typing.get_origin(args[0]) is typing.Annotated and int in typing.get_args(args[0])
        ):
            return [1, 2, 3]
    pytest.fail(f"no perturbation known for {PROJECT}:{key} (current {current!r}); add valid values to SAMPLES")


def _decoded(raw: dict[str, str], section: str) -> Any:
    return decode_value(raw.get(f"{PROJECT}:{section}"))


def perturbed_config(raw: dict[str, str], cfg: StackConfig, path: Path_, value: Any) -> dict[str, str] | None:
    """``raw`` with ``path`` set to ``value``; None when the path runs through a list the base lacks.

    Maps missing on the way are filled with the model's current values (defaults included), so
    setting ``limits.memory`` keeps ``limits.cpu``; nothing else of the section becomes explicit.
    """
    section = str(path[0])
    out = dict(raw)
    if len(path) == 1:
        out[f"{PROJECT}:{section}"] = config_text(value)
        return out
    root = _decoded(raw, section) or {}
    node: Any = root
    for depth, part in enumerate(path[1:-1], start=2):
        if isinstance(part, int):
            if not isinstance(node, list) or len(node) <= part:
                return None
        elif part not in node:
            node[part] = copy.deepcopy(_current(cfg, path[:depth])[1])
        node = node[part]
    last = path[-1]
    if isinstance(last, int) or not isinstance(node, dict):
        return None
    node[last] = value
    if last == "kind":
        # Switching kind drops the settings of the variants it leaves; the model refuses them otherwise.
        for _section, key, kind in (v for v in variant_keys() if v[0] == section):
            if kind != value:
                node.pop(key, None)
    out[f"{PROJECT}:{section}"] = config_text(root)
    return out


def signature(run: ProgramRun) -> str:
    """What the engine would be asked to do: every resource with its inputs and options, and the outputs."""
    resources = {
        f"{r.type}::{r.name}": {
            "parent": r.parent,
            "inputs": r.inputs,
            "protect": r.protect,
            "retain_on_delete": r.retain_on_delete,
            "provider": r.provider,
            "depends_on": sorted(r.depends_on),
            "secret_inputs": sorted(r.secret_inputs),
        }
        for r in run.resources
    }
    # sort_keys: registration order depends on when outputs resolve, which is not a change.
    return json.dumps({"resources": resources, "outputs": run.outputs}, sort_keys=True, default=str)


def _run(base: Path, raw: dict[str, str] | None = None, section: str | None = None) -> ProgramRun:
    """The program on ``base``, with one section replaced by its value in ``raw``."""
    if raw is None or section is None:
        return run_program(base)
    value = _decoded(raw, section)
    return run_program(base, overrides={section: value})


LEAVES = list(leaves(StackConfig))


def test_the_walk_sees_every_section() -> None:
    sections = {str(path[0]) for path, _ in LEAVES}
    assert sections == {f.alias or n for n, f in StackConfig.model_fields.items()}
    assert len(LEAVES) >= 40, len(LEAVES)


Baseline = tuple[Path, dict[str, str], StackConfig, str]


@pytest.fixture(scope="module")
def baselines() -> list[Baseline]:
    found = []
    for base in BASES:
        raw = load_stack_file(base)
        found.append((base, raw, parse_raw_config(raw, stack=stack_name_of(base)), signature(_run(base))))
    return found


@pytest.mark.parametrize(("path", "annotation"), LEAVES, ids=[dotted(p) for p, _ in LEAVES])
def test_every_key_changes_what_is_deployed(path: Path_, annotation: Any, baselines: list[Baseline]) -> None:
    tried: list[str] = []
    for base, raw, cfg, before in baselines:
        stack = stack_name_of(base)
        present, current = _current(cfg, path)
        if not present:
            continue  # the base lacks the list item or optional block (aws.eks) that holds the key
        for value in candidates(path, annotation, current):
            changed = perturbed_config(raw, cfg, path, value)
            if changed is None:
                continue
            try:
                parse_raw_config(changed, stack=stack)
            except StackConfigError:
                tried.append(f"{stack}: {value!r} refused")
                continue
            if signature(_run(base, changed, str(path[0]))) != before:
                return
            tried.append(f"{stack}: {value!r} accepted, nothing changed")
    pytest.fail(f"{PROJECT}:{dotted(path)} changes nothing the program registers ({'; '.join(tried) or 'no base'})")


RDS_MINIMAL = {
    "subnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-0a1b2c3d4e5f60719"],
    "securityGroupIds": ["sg-0a1b2c3d4e5f60718"],
}


@pytest.mark.parametrize(("section", "key", "kind"), variant_keys())
def test_settings_of_a_variant_the_stack_does_not_use_are_refused(section: str, key: str, kind: str) -> None:
    other = next(k for s, _key, k in variant_keys() if s == section and k != kind)
    # The other section takes an AWS kind, so the aws section stays in use whatever is under test.
    aws_user = {"objectStore": {"kind": "s3"}, "postgres": {"kind": "rds", "rds": RDS_MINIMAL}}
    other_section = next(name for name in aws_user if name != section)
    raw = {
        f"{PROJECT}:aws": json.dumps({"region": "eu-west-1"}),
        f"{PROJECT}:{other_section}": json.dumps(aws_user[other_section]),
        f"{PROJECT}:{section}": json.dumps({"kind": other, key: {}}),
    }
    with pytest.raises(StackConfigError) as caught:
        parse_raw_config(raw)
    assert f"{PROJECT}:{section}.{key} =" in str(caught.value)
    assert "nothing would read it" in str(caught.value)
