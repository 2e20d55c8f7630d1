"""``make plan``: check a stack's config and show every resource the program would register.

Runs offline (Pulumi mocks, no cluster, no Pulumi CLI), so it answers "is my stack file right and
what will it create?" in a couple of seconds on any machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pulumi
import typer
from rich.console import Console
from rich.tree import Tree

from infra.offline import REPO_ROOT, ProgramRun, run_program

app = typer.Typer(add_completion=False, help=__doc__)


def resource_tree(run: ProgramRun) -> Tree:
    tree = Tree(f"[bold]stack {run.stack}[/] ({len(run.resources)} resources)")
    nodes: dict[str, Tree] = {}
    for resource in run.resources:
        label = f"{resource.name} [dim]{resource.type}[/]"
        flags = [flag for flag, on in (("protect", resource.protect), ("retain", resource.retain_on_delete)) if on]
        if flags:
            label += f" [yellow]({', '.join(flags)})[/]"
        nodes[resource.urn] = nodes.get(resource.parent, tree).add(label)
    return tree


def _secret_or_value(run: ProgramRun, key: str) -> str:
    return "[secret]" if key in run.secret_outputs else repr(run.outputs[key])


@app.command()
def plan(
    stack: Annotated[str, typer.Option(help="Stack name: reads Pulumi.<stack>.yaml")] = "dev",
    stack_file: Annotated[Path | None, typer.Option(help="Explicit stack file instead of --stack")] = None,
) -> None:
    """Validate the stack config and print the resource tree and stack outputs."""
    console = Console()
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
    for key in sorted(run.outputs):
        console.print(f"  output [bold]{key}[/] = {_secret_or_value(run, key)}", highlight=False)


if __name__ == "__main__":
    app()
