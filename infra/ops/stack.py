"""The helm releases a stack installs, with exactly the values its Pulumi program would pass.

The values come from running the program itself offline (``infra.offline.run_program``: the same
components and pure ``build_values`` builders ``pulumi up`` runs), not from a second copy of the
composition, so ``qframe-ops charts template`` can never drift from what a deploy installs; a
component added later (Dask, Ray, ...) shows up here without a change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.ops.errors import OpsError

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
REPO_ROOT = Path(__file__).resolve().parents[2]
# Stack keys a release's values come from, where the component's name is not the key itself.
_CONFIG_KEYS = {"tenancy": "labels", "object-store": "objectStore"}


@dataclass(frozen=True)
class ReleaseSpec:
    """One helm Release of the program: which chart, where, with which values, set by which key."""

    release: str
    chart: Path
    namespace: str
    values: dict[str, Any]
    component: str
    config_key: str

    @property
    def chart_name(self) -> str:
        return self.chart.name


def config_key(component: str) -> str:
    """The stack section that drives a component (``object-store`` -> ``objectStore``)."""
    if component in _CONFIG_KEYS:
        return _CONFIG_KEYS[component]
    head, *rest = component.split("-")
    return head + "".join(part.capitalize() for part in rest)


def stack_file(stack: str, root: Path = REPO_ROOT) -> Path:
    """``dev`` -> ``<repo>/Pulumi.dev.yaml``; a path to a stack file is taken as it is."""
    if stack.endswith((".yaml", ".yml")):
        given = Path(stack)
        if not given.is_file():
            raise OpsError(f"--stack {stack}: no such stack file", "give a stack name (dev) or an existing file")
        return given
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", stack):
        raise OpsError(f"--stack {stack!r} is not a stack name", "use the NAME of a Pulumi.NAME.yaml, e.g. --stack dev")
    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in root.glob("Pulumi.*.yaml"))
        raise OpsError(f"--stack {stack}: {path} does not exist", f"stacks in this repository: {', '.join(known)}")
    return path


def stack_releases(path: Path) -> list[ReleaseSpec]:
    """Every Release the program registers for the stack file, in registration order."""
    from infra.config import StackConfigError
    from infra.offline import run_program

    try:
        run = run_program(path)
    except StackConfigError as exc:
        raise OpsError(str(exc).splitlines()[0], "see `make plan` for every problem with the stack file") from None
    specs = []
    for resource in run.of_type(HELM_RELEASE):
        inputs = resource.inputs
        component = resource.parent.rsplit("::", 1)[-1]
        chart = Path(inputs["chart"])
        # The program makes chart paths relative to its working directory (stable state across clones).
        chart = chart if chart.is_absolute() else (Path.cwd() / chart).resolve()
        specs.append(
            ReleaseSpec(
                release=inputs["name"],
                chart=chart,
                namespace=inputs["namespace"],
                values=inputs.get("values") or {},
                component=component,
                config_key=config_key(component),
            )
        )
    return specs


def chart_dirs(root: Path = REPO_ROOT) -> list[Path]:
    return sorted(p.parent for p in (root / "charts").glob("*/Chart.yaml"))
