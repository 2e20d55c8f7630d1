"""Run the whole Pulumi program offline under ``pulumi.runtime.set_mocks``; record what it registered.

Used by the tests, which assert over *all* registered resources (type, name, inputs, parent,
options) so a component added later is covered by the same checks, and by ``make plan``, which
shows what a stack would create without a cluster or the Pulumi CLI.
Each run happens in a fresh ``contextvars.Context``: Pulumi keeps its settings, config and root
stack in context variables, so runs never leak into each other.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from infra.config import PROJECT
from infra.passwords import GENERATED_KIND
from infra.program import main
from infra.stack_file import read_stack_file

REPO_ROOT = Path(__file__).resolve().parents[1]
DYNAMIC_RESOURCE = "pulumi-python:dynamic:Resource"
MOCK_SECRET_PREFIX = "mock-generated-secret-"  # noqa: S105 - a marker, not a credential


@dataclass(frozen=True)
class Registered:
    """One resource as the engine would have received it."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    protect: bool = False
    retain_on_delete: bool = False
    depends_on: tuple[str, ...] = ()
    additional_secret_outputs: tuple[str, ...] = ()
    provider: str = ""
    secret_inputs: frozenset[str] = frozenset()


@dataclass
class ProgramRun:
    """Everything one program run registered, in registration order, plus the stack outputs."""

    stack: str
    resources: list[Registered] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def of_type(self, type_token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str, name: str | None = None) -> Registered:
        found = [r for r in self.of_type(type_token) if name is None or r.name == name]
        if len(found) != 1:
            names = [r.name for r in self.of_type(type_token)]
            raise AssertionError(f"expected one {type_token} named {name!r}, found {len(found)} among {names}")
        return found[0]

    def by_urn(self, urn: str) -> Registered:
        for resource in self.resources:
            if resource.urn == urn:
                return resource
        raise KeyError(urn)

    def ancestors(self, resource: Registered) -> Iterator[Registered]:
        urn = resource.parent
        while urn and not urn.endswith(f"::pulumi:pulumi:Stack::{PROJECT}-{self.stack}"):
            parent = self.by_urn(urn)
            yield parent
            urn = parent.parent


MOCK_ACCOUNT = "123456789012"
MOCK_ZONES = tuple(f"mock-zone-{letter}" for letter in "abcdef")
ZONES_INVOKE = "aws:index/getAvailabilityZones:getAvailabilityZones"
KMS_ALIAS_INVOKE = "aws:kms/getAlias:getAlias"


def mock_alias_key_id(alias: str) -> str:
    """The key an alias resolves to under mocks: recognisable, and never the alias itself."""
    return "mock-key-" + alias.removeprefix("alias/").replace("/", "-")


def mock_alias_key_arn(alias: str) -> str:
    return f"arn:aws:kms:mock:{MOCK_ACCOUNT}:key/{mock_alias_key_id(alias)}"


def computed_outputs(resource_type: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Stand-ins for outputs only AWS computes that other resources' inputs are built from.

    Without them an IRSA trust policy or the EKS kubeconfig would be built from nothing; with
    recognisable fakes the tests can assert those documents exactly.
    """
    computed: dict[str, Callable[[], dict[str, Any]]] = {
        "aws:eks/cluster:Cluster": lambda: {
            "vpcConfig": {**dict(inputs.get("vpcConfig") or {}), "clusterSecurityGroupId": f"sg-mock-{name}-cluster"},
            "arn": f"arn:aws:eks:mock:{MOCK_ACCOUNT}:cluster/{inputs.get('name', name)}",
            "endpoint": f"https://{name}.mock-eks.example",
            "certificateAuthority": {"data": "bW9jay1jYQ=="},
            "identities": [{"oidcs": [{"issuer": f"https://oidc.mock-eks.example/id/{name}"}]}],
        },
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider": lambda: {
            "arn": f"arn:aws:iam::{MOCK_ACCOUNT}:oidc-provider/{str(inputs.get('url', '')).removeprefix('https://')}"
        },
        "aws:iam/role:Role": lambda: {"arn": f"arn:aws:iam::{MOCK_ACCOUNT}:role/{name}"},
        "aws:kms/key:Key": lambda: {"arn": f"arn:aws:kms:mock:{MOCK_ACCOUNT}:key/{name}"},
        "aws:ecr/repository:Repository": lambda: {
            "repositoryUrl": f"{MOCK_ACCOUNT}.dkr.ecr.mock.amazonaws.com/{inputs.get('name', name)}"
        },
        "aws:rds/instance:Instance": lambda: {"address": f"{name}.mock-rds.example"},
        # EKS names a managed group's Auto Scaling group eks-<group>-<uuid>.
        "aws:eks/nodeGroup:NodeGroup": lambda: {
            "arn": f"arn:aws:eks:mock:{MOCK_ACCOUNT}:nodegroup/{inputs.get('clusterName')}/"
            f"{inputs.get('nodeGroupName', name)}/mock-id",
            "resources": [{"autoscalingGroups": [{"name": f"eks-{inputs.get('nodeGroupName', name)}-mock"}]}],
        },
    }
    build = computed.get(resource_type)
    return build() if build is not None else {}


class _EchoMocks(pulumi.runtime.Mocks):
    """Resources echo their inputs as state (plus ``computed_outputs``) and get a stable id.

    Invokes return nothing, except the availability zones (``MOCK_ZONES``) a VPC is spread over and
    a KMS alias's target key (``mock_alias_key_arn``).
    """

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        # Computed outputs win where they extend an input (the EKS cluster's vpcConfig).
        state = {**dict(args.inputs), **computed_outputs(args.typ, args.name, args.inputs)}
        if args.typ == DYNAMIC_RESOURCE and state.get("kind") == GENERATED_KIND:
            # Dynamic providers do not run under mocks; a recognisable stand-in lets tests prove
            # that generated values never leak into plain values, ConfigMaps or outputs.
            state["result"] = f"{MOCK_SECRET_PREFIX}{args.name}"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == ZONES_INVOKE:
            return {"names": list(MOCK_ZONES), "zoneIds": [f"mock-az{i}" for i in range(len(MOCK_ZONES))]}, []
        if args.token == KMS_ALIAS_INVOKE:
            alias = str(args.args.get("name", ""))
            return {
                "name": alias,
                "arn": f"arn:aws:kms:mock:{MOCK_ACCOUNT}:{alias}",
                "targetKeyId": mock_alias_key_id(alias),
                "targetKeyArn": mock_alias_key_arn(alias),
            }, []
        return {}, None


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, plus a record of each request (the mock args alone lack parent/options)."""

    def __init__(self, mocks: pulumi.runtime.Mocks, run: ProgramRun) -> None:
        super().__init__(mocks)
        self._run = run

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            raw_inputs = rpc.deserialize_properties(request.object)
            self._run.resources.append(
                Registered(
                    type=request.type,
                    name=request.name,
                    urn=_engine_urn(response.urn),
                    parent=_engine_urn(request.parent),
                    custom=bool(request.custom),
                    inputs={key: _unwrap_secrets(value) for key, value in raw_inputs.items()},
                    secret_inputs=frozenset(key for key, value in raw_inputs.items() if _holds_secret(value)),
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    depends_on=tuple(request.dependencies),
                    additional_secret_outputs=tuple(request.additionalSecretOutputs),
                    provider=_engine_urn(request.provider),
                )
            )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        if "::pulumi:pulumi:Stack::" in request.urn:
            outputs = rpc.deserialize_properties(request.outputs, keep_unknowns=True)
            self._run.outputs = {key: _unwrap_secrets(value) for key, value in outputs.items()}
            self._run.secret_outputs = {key for key, value in outputs.items() if _holds_secret(value)}
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


def _engine_urn(urn: str) -> str:
    """The mock monitor puts the root stack into each URN's type chain; the engine does not.

    Normalising lets tests compare what the program registers offline with a real stack's state.
    """
    return urn.replace("::pulumi:pulumi:Stack$", "::")


def _holds_secret(value: Any) -> bool:
    if rpc.is_rpc_secret(value):
        return True
    if isinstance(value, dict):
        return any(_holds_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_secret(v) for v in value)
    return False


def _unwrap_secrets(value: Any) -> Any:
    value = rpc.unwrap_rpc_secret(value)
    if isinstance(value, dict):
        return {k: _unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(v) for v in value]
    return value


def load_stack_file(path: Path) -> dict[str, str]:
    """Pulumi's flat config map for a stack file: structured values as JSON text, scalars as text.

    The file is read strictly (infra/stack_file.py): duplicate keys, YAML errors and a malformed
    ``config:`` raise a StackConfigError naming the key. Encrypted values of other namespaces
    (providers' credentials) cannot be decrypted offline and are not read by the program: skipped.
    """
    config = read_stack_file(path, stack=stack_name_of(path))
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue
        flat[key] = config_text(value)
    return flat


def config_text(value: Any) -> str:
    """One value as the Pulumi engine hands it to the program: structures as JSON, scalars as text."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def stack_name_of(path: Path) -> str:
    """``Pulumi.dev.yaml`` -> ``dev``; ``kafka.error.even-replicas.yaml`` -> ``kafka``."""
    name = path.name.removesuffix(".yaml")
    return name.removeprefix("Pulumi.").split(".")[0]


def run_program(
    stack_file: Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    program: Callable[[], None] | None = None,
) -> ProgramRun:
    """Runs ``infra.program.main`` (or ``program``) for one stack file and records what it registered.

    ``overrides`` replace top-level config sections (``{"dask": {...}}``) for "what if" tests.
    Exceptions raised by the program (e.g. a ``StackConfigError``) propagate to the caller; the
    run's record is then attached to the exception as ``exc.program_run`` so tests can prove that
    nothing was registered before the failure.
    """
    config = load_stack_file(stack_file)
    for key, value in (overrides or {}).items():
        config[f"{PROJECT}:{key}"] = config_text(value)
    if program is None:
        program = main
    run = ProgramRun(stack=stack_name_of(stack_file))
    return contextvars.Context().run(_run_isolated, run, config, program)


def _ensure_event_loop() -> None:
    """Pulumi's mocks build futures on the thread's current loop; ``asyncio.run`` elsewhere leaves none set."""
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


def _run_isolated(run: ProgramRun, config: dict[str, str], program: Callable[[], None]) -> ProgramRun:
    _ensure_event_loop()
    monitor = _RecordingMonitor(_EchoMocks(), run)
    pulumi.runtime.set_mocks(_EchoMocks(), project=PROJECT, stack=run.stack, preview=False, monitor=monitor)
    # set_mocks finishes a root stack of its own; drop it so run_in_stack makes the stack the
    # program's exports land on, exactly as `pulumi up` does.
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_all_config(config)
    try:
        _sync_await(run_in_stack(program))
    except BaseException as exc:
        exc.program_run = run  # type: ignore[attr-defined]
        raise
    return run
