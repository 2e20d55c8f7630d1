"""`python -m tools.images`: build, list, tags, lock, lint, push, stop."""

from __future__ import annotations

import subprocess
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tools.images import builder, daemon, tagfile, wheels
from tools.images import lint as lint_mod
from tools.images.prune import prune
from tools.images.recipes import RecipeError, load_recipes, select
from tools.paths import REPO_ROOT

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err = Console(stderr=True)

Names = Annotated[list[str] | None, typer.Argument(help="image names (default: every folder in images/)")]


def _fail(message: str) -> typer.Exit:
    err.print("[red]error:[/red]", end=" ")
    err.print(message, markup=False, highlight=False)
    return typer.Exit(1)


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


@app.command()
def build(
    names: Names = None,
    keep_engine: Annotated[bool, typer.Option(help="leave dockerd running afterwards")] = False,
) -> None:
    """Build the images (cached by content tag) and save archives for the node."""
    started = time.monotonic()
    try:
        with console.status("building") as status:

            def progress(name: str, state: str, seconds: float) -> None:
                if state == "building":
                    status.update(f"building [bold]{name}[/bold] (log: ~/.cache/qframe-images/logs/image-{name}.log)")
                else:
                    console.print(f"  {name}: {state}" + (f" in {seconds:.0f}s" if state == "built" else ""))

            built = builder.build(names, keep_engine=keep_engine, progress=progress)
    except (RecipeError, RuntimeError) as exc:
        raise _fail(str(exc)) from exc
    table = Table("image", "ref", "size", "archive")
    for image in built.values():
        table.add_row(image.name, image.ref, _mib(image.size_bytes), str(image.archive))
    console.print(table)
    console.print(f"{len(built)} image(s) in {time.monotonic() - started:.1f}s")


@app.command("list")
def list_images(names: Names = None) -> None:
    """Every recipe with its tag, UID and whether its archive is built."""
    try:
        the_plan = builder.plan(names)
    except RecipeError as exc:
        raise _fail(str(exc)) from exc
    table = Table("image", "ref", "uid", "bases", "built")
    for recipe in the_plan.recipes:
        ref = the_plan.refs[recipe.name]
        archive = builder.archive_path(ref)
        table.add_row(
            recipe.name, ref, str(recipe.uid), ",".join(recipe.bases) or "-", "yes" if archive.is_file() else "no"
        )
    console.print(table)


@app.command()
def tags(
    write: Annotated[bool, typer.Option("--write", help="regenerate infra/image_tags.py")] = False,
    check: Annotated[bool, typer.Option("--check", help="fail when infra/image_tags.py is stale")] = False,
) -> None:
    """Print the content tags; --write regenerates infra/image_tags.py, --check verifies it."""
    try:
        the_plan = builder.plan(None)
    except RecipeError as exc:
        raise _fail(str(exc)) from exc
    current = {name: ref.rsplit(":", 1)[1] for name, ref in the_plan.refs.items()}
    if write:
        tagfile.write(current)
        console.print(f"wrote {tagfile.TAG_FILE.relative_to(REPO_ROOT)}")
    elif check:
        if not tagfile.is_current(current):
            raise _fail("infra/image_tags.py is stale\n  fix: python -m tools.images tags --write (and commit it)")
        console.print("infra/image_tags.py is current")
    for name, tag in current.items():
        console.print(f"{name}\t{tag}", highlight=False)


@app.command()
def lock(names: Names = None) -> None:
    """Recompile images/<name>/requirements.txt (hashed) from requirements.in."""
    try:
        recipes = [r for r in select(load_recipes(), names) if (r.folder / "requirements.in").is_file()]
        for recipe in recipes:
            console.print(f"locked {wheels.lock(recipe).relative_to(REPO_ROOT)}")
    except (RecipeError, wheels.WheelError) as exc:
        raise _fail(str(exc)) from exc


@app.command()
def lint() -> None:
    """hadolint over every images/*/Dockerfile."""
    results = lint_mod.lint()
    for result in results:
        mark = "[green]ok[/green]" if result.ok else "[red]FAIL[/red]"
        console.print(f"{mark} {result.dockerfile.relative_to(REPO_ROOT)}")
        if result.output:
            console.print(result.output, highlight=False)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def push(
    registry: Annotated[str, typer.Option(help="e.g. registry.example.com/team (no trailing slash)")],
    names: Names = None,
) -> None:
    """Retag qframe/<name>:<tag> as <registry>/<name>:<tag> and push (uses your docker login)."""
    registry = registry.rstrip("/")
    if not registry or " " in registry:
        raise _fail("--registry must be a registry host with an optional path, e.g. registry.example.com/team")
    built = builder.build(names, keep_engine=True)
    with daemon.docker_engine() as engine:
        for image in built.values():
            builder.load_into(engine, image)
            target = f"{registry}/{image.ref.split('/', 1)[1]}"
            engine.run("tag", image.ref, target)
            # Pushing needs the user's own credentials: use their docker CLI config, not our empty one.
            env = {k: v for k, v in engine.env.items() if k != "DOCKER_CONFIG"}
            done = subprocess.run([engine.docker, "push", target], env=env, check=False)
            if done.returncode != 0:
                raise _fail(f"docker push {target} failed\n  fix: docker login {registry.split('/')[0]}")
            console.print(f"pushed {target}")


@app.command("prune")
def prune_cache() -> None:
    """Drop archives, bases, wheelhouses and images that no current recipe uses."""
    result = prune()
    for path in result.files:
        console.print(f"removed {path}", highlight=False)
    for ref in result.images:
        console.print(f"removed image {ref}", highlight=False)
    console.print(f"freed {_mib(result.freed_bytes)} of cache files (plus engine storage of removed images)")


@app.command()
def stop() -> None:
    """Stop a dockerd/containerd left running with --keep-engine."""
    console.print("stopped" if daemon.stop_engine() else "nothing was running")
