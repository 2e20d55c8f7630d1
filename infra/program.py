"""Composition of the platform: read the stack config once, create the components, export outputs."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi.runtime import config as runtime_config

from infra.components.tenancy import Tenancy, TenancyArgs
from infra.config import StackConfig, StackConfigError, parse_raw_config


def load_stack_config() -> StackConfig:
    """Parses every ``qframe-research:*`` key of the running stack into the closed model.

    Pulumi hands config to the program as a flat map (the ``PULUMI_CONFIG`` environment of the
    language host, or values set by tests); ``pulumi.Config`` can only read keys one by one, which
    would let an unknown key slip through unnoticed.
    """
    raw: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return parse_raw_config(raw, stack=pulumi.get_stack())


def main() -> None:
    try:
        cfg = load_stack_config()
    except StackConfigError as exc:
        # RunError prints the message alone, without a Python traceback.
        raise pulumi.RunError(str(exc)) from None
    deploy(cfg)


def deploy(cfg: StackConfig) -> None:
    provider = k8s.Provider("k8s", enable_server_side_apply=True)
    tenancy = Tenancy(
        "tenancy",
        TenancyArgs(config=cfg),
        opts=pulumi.ResourceOptions(providers={"kubernetes": provider}),
    )
    pulumi.export("environment", cfg.environment)
    pulumi.export("namespace", tenancy.namespace_name)
