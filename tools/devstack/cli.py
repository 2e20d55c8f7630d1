"""`make up`, `make down`, `make preview`, `make plan`: the dev stack and what it would create.

With no KUBECONFIG (or QFRAME_CLUSTER=local) a local control plane is started first; with a
KUBECONFIG pointing at a real cluster (kind, EKS, ...) the stack is deployed there instead.
`plan` needs neither: it checks the stack config and lists every resource offline.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from tools.devstack.cluster import CONTROL_PLANE_TOOLS, ClusterError, LocalCluster
from tools.devstack.paths import MissingToolError, StateDirs, require_tools
from tools.devstack.pulumi_cli import PULUMI_TOOLS, PulumiError, PulumiWorkspace
from tools.paths import REPO_ROOT

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
console = Console()
T = TypeVar("T")

StackOption = Annotated[str, typer.Option(help="Stack name: deploys Pulumi.<stack>.yaml")]
LOCAL_CLUSTER_NAME = "qframe"


def wants_local_cluster(environ: dict[str, str] | os._Environ[str]) -> bool:
    """Local unless a KUBECONFIG is given and QFRAME_CLUSTER is not forced to 'local'."""
    return environ.get("QFRAME_CLUSTER", "") == "local" or not environ.get("KUBECONFIG")


def _step(number: int, total: int, title: str, action: Callable[[], T]) -> T:
    start = time.monotonic()
    with console.status(f"[bold][{number}/{total}][/] {title}"):
        try:
            result = action()
        except (MissingToolError, ClusterError, PulumiError, FileNotFoundError) as exc:
            console.print(f"[red]✗[/] [{number}/{total}] {title}")
            console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    console.print(f"[green]✓[/] [{number}/{total}] {title} [dim]({time.monotonic() - start:.1f}s)[/]")
    return result


def _target(state: StateDirs) -> tuple[LocalCluster | None, Path | None]:
    if wants_local_cluster(os.environ):
        return LocalCluster(LOCAL_CLUSTER_NAME, state), state.kubeconfig
    return None, Path(os.environ["KUBECONFIG"])


def _print_outputs(workspace: PulumiWorkspace, kubeconfig: Path | None) -> None:
    outputs = workspace.outputs()
    table = Table(title=f"stack {workspace.stack} outputs", show_header=True)
    table.add_column("output")
    table.add_column("value")
    for key in sorted(outputs):
        table.add_row(key, str(outputs[key]))
    console.print(table)
    if kubeconfig is not None:
        console.print(f"kubectl access: [bold]export KUBECONFIG={kubeconfig}[/]")
    console.print(
        "Secrets (generated passwords, connection URIs) live only in Kubernetes Secrets of the "
        "namespace and as Pulumi secrets; `kubectl get secrets -n <namespace>` lists them."
    )


@app.command()
def up(stack: StackOption = "dev") -> None:
    """Create (or reuse) the cluster and run `pulumi up` of the stack; print its outputs."""
    state = StateDirs.default()
    cluster, kubeconfig = _target(state)
    workspace = PulumiWorkspace(state, stack)
    total = 4 if cluster else 3
    step = 1
    _step(
        step,
        total,
        "pinned tools present",
        lambda: require_tools(*PULUMI_TOOLS, *(CONTROL_PLANE_TOOLS if cluster else ())),
    )
    if cluster is not None:
        step += 1
        _step(
            step, total, f"local cluster '{cluster.name}' (kwok, Kubernetes control plane on 127.0.0.1)", cluster.create
        )
    step += 1
    _step(step, total, f"pulumi stack '{stack}' (file backend in {state.pulumi_backend})", workspace.prepare)
    step += 1
    console.print(f"[bold][{step}/{total}][/] pulumi up (Pulumi's own progress follows)")
    try:
        workspace.up(kubeconfig, stream=True)
    except PulumiError as exc:
        console.print(
            f"[red]error:[/] {exc}\nFix the cause above and run `make up` again; it resumes where it stopped."
        )
        raise typer.Exit(1) from None
    _print_outputs(workspace, kubeconfig)


@app.command()
def preview(stack: StackOption = "dev") -> None:
    """`pulumi preview` of the stack against the cluster (the local one must be up)."""
    state = StateDirs.default()
    cluster, kubeconfig = _target(state)
    if cluster is not None and not cluster.exists():
        console.print("[red]error:[/] the local cluster does not exist yet; run `make up` first")
        raise typer.Exit(1)
    workspace = PulumiWorkspace(state, stack)
    _step(1, 2, f"pulumi stack '{stack}'", workspace.prepare)
    console.print("[bold][2/2][/] pulumi preview")
    try:
        workspace.run("preview", "--diff", "--stack", stack, kubeconfig=kubeconfig, stream=True)
    except PulumiError:
        raise typer.Exit(1) from None


@app.command()
def down(stack: StackOption = "dev") -> None:
    """`pulumi destroy` of the stack, then remove the local cluster (if one is used)."""
    state = StateDirs.default()
    cluster, kubeconfig = _target(state)
    workspace = PulumiWorkspace(state, stack)
    total = 3 if cluster else 2
    if cluster is not None and not cluster.exists():
        console.print("nothing to destroy: no local cluster")
        return
    _step(1, total, f"pulumi stack '{stack}'", workspace.prepare)
    console.print(f"[bold][2/{total}][/] pulumi destroy")
    try:
        workspace.destroy(kubeconfig, stream=True)
    except PulumiError:
        raise typer.Exit(1) from None
    if cluster is not None:
        _step(3, total, f"remove local cluster '{cluster.name}'", cluster.delete)


@app.command()
def plan(
    stack: Annotated[str, typer.Option(help="Stack name: reads Pulumi.<stack>.yaml")] = "dev",
    stack_file: Annotated[Path | None, typer.Option(help="Explicit stack file instead of --stack")] = None,
) -> None:
    """Validate the stack config and print the resource tree and stack outputs (offline, no cluster)."""
    # Importing the Pulumi program (pulumi-aws included) takes seconds; up/down/preview do not need it.
    import pulumi  # noqa: PLC0415

    from infra.offline import run_program  # noqa: PLC0415
    from tools.devstack.plan import output_lines, resource_tree  # noqa: PLC0415

    path = stack_file or REPO_ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        console.print(f"[red]error:[/] no stack file {path}; create it or pass --stack-file")
        raise typer.Exit(2)
    try:
        run = run_program(path)
    except pulumi.RunError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(resource_tree(run))
    for line in output_lines(run):
        console.print(line, highlight=False)
