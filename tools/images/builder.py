"""Building images: stage a context, `docker build --network=none`, `docker save` an archive.

An image is rebuilt only when its archive for the current content tag is missing, so a second
`build()` over unchanged recipes reads a few sidecar files and returns without starting Docker.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.images import artifacts, bases, wheels
from tools.images.daemon import Engine, docker_engine, images_cache
from tools.images.recipes import IMAGES_DIR, Recipe, RecipeError, load_flavours, load_pins, load_recipes, parse_recipe
from tools.images.tags import all_tags
from tools.paths import REPO_ROOT

REGISTRY = "qframe"


@dataclass(frozen=True)
class BuiltImage:
    """One built image: its ref, the `docker save` archive for the node, and its size."""

    name: str
    ref: str
    archive: Path
    size_bytes: int


@dataclass(frozen=True)
class Plan:
    """What `build` would produce: refs by image name and base refs by flavour, from content only."""

    recipes: list[Recipe]
    refs: dict[str, str]
    base_refs: dict[str, str]


def plan(names: Sequence[str] | None = None) -> Plan:
    flavours = load_flavours()
    pins = load_pins()
    if names:
        # Only the named folders are read: another image's half-written recipe must not block these.
        known = sorted(p.name for p in IMAGES_DIR.iterdir() if (p / "image.toml").is_file())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise RecipeError(f"unknown image(s) {unknown}\n  fix: one of {known}")
        chosen = [parse_recipe(IMAGES_DIR / n, flavours, pins) for n in dict.fromkeys(names)]
    else:
        chosen = list(load_recipes().values())
    base_tags, tags = all_tags(chosen, flavours, pins, bases.TRIM_SCRIPT)
    return Plan(
        recipes=chosen,
        refs={r.name: f"{REGISTRY}/{r.name}:{tags[r.name]}" for r in chosen},
        base_refs={name: f"{REGISTRY}/base-{name}:{tag}" for name, tag in base_tags.items()},
    )


def archive_path(ref: str) -> Path:
    name, tag = ref.split("/", 1)[1].split(":")
    return images_cache() / "archives" / f"{name}-{tag}.tar"


def _cached(name: str, ref: str) -> BuiltImage | None:
    archive = archive_path(ref)
    meta = archive.with_suffix(".json")
    if archive.is_file() and meta.is_file():
        size = int(json.loads(meta.read_text())["size_bytes"])
        return BuiltImage(name=name, ref=ref, archive=archive, size_bytes=size)
    return None


def _git_revision() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def labels(recipe: Recipe, tag: str, revision: str) -> dict[str, str]:
    """OCI labels added by the builder (recipes do not repeat them)."""
    return {
        "org.opencontainers.image.title": recipe.title,
        "org.opencontainers.image.description": recipe.description,
        "org.opencontainers.image.version": tag,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.source": f"qframe-research-platform/images/{recipe.name}",
        "org.opencontainers.image.vendor": "QFrame",
        "io.qframe.image.uid": str(recipe.uid),
        "io.qframe.image.probe": recipe.probe,
    }


def build_args(recipe: Recipe, tag: str, pins: dict[str, str], base_refs: dict[str, str]) -> dict[str, str]:
    args = {f"BASE_{b.upper().replace('-', '_')}": base_refs[b] for b in recipe.bases}
    args["IMAGE_VERSION"] = tag
    args.update({key: pins[key] for key in recipe.versions})
    return args


def _copy_input(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, dest)
    else:
        shutil.copy2(source, dest)


def stage_context(recipe: Recipe, pins: dict[str, str], context: Path) -> None:
    """The recipe folder plus its inputs: tool builds, the wheelhouse at wheels/, local wheels."""
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(recipe.folder, context, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    logs = images_cache() / "logs"
    for dest, source in recipe.inputs.items():
        kind, _, name = source.partition(":")
        if kind == "tool":
            _copy_input(artifacts.ensure_tool(name, pins, logs), context / dest)
        elif kind == "maven":
            props = {key: pins[key] for key in recipe.versions}
            _copy_input(artifacts.maven_jars(recipe.folder / name, props, logs), context / dest)
        elif kind == "npm":
            _copy_input(artifacts.npm_modules(recipe.folder / name, logs), context / dest)
        else:
            wheels.local_wheel(REPO_ROOT / name, context / dest)
    if recipe.requirements is not None:
        house = wheels.wheelhouse(recipe.requirements)
        shutil.copytree(
            house, context / "wheels", ignore=shutil.ignore_patterns(".complete", wheels.HOUSE_REQUIREMENTS)
        )
        # The house's copy adds the hashes of wheels built from allowed sdists; otherwise identical.
        shutil.copy2(house / wheels.HOUSE_REQUIREMENTS, context / "requirements.txt")


def _build_one(
    engine: Engine, recipe: Recipe, ref: str, plan_: Plan, *, pins: dict[str, str], revision: str
) -> BuiltImage:
    flavours = load_flavours()
    base_refs = {b: bases.ensure_base(engine, flavours[b], pins) for b in recipe.bases}
    if base_refs != {b: plan_.base_refs[b] for b in recipe.bases}:
        raise RuntimeError(f"base refs disagree with the plan: {base_refs}")
    tag = ref.rsplit(":", 1)[1]
    cache = images_cache()
    context = cache / "contexts" / recipe.name
    stage_context(recipe, pins, context)
    command = ["build", "--network=none", "--force-rm", "--tag", ref]
    for key, value in labels(recipe, tag, revision).items():
        command += ["--label", f"{key}={value}"]
    for key, value in build_args(recipe, tag, pins, plan_.base_refs).items():
        command += ["--build-arg", f"{key}={value}"]
    log = cache / "logs" / f"image-{recipe.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        done = subprocess.run(
            [engine.docker, *command, str(context)], env=engine.env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"docker build of {recipe.name} failed (log: {log}):\n{tail}")
    shutil.rmtree(context, ignore_errors=True)
    archive = archive_path(ref)
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".tar.tmp")
    engine.run("save", "--output", str(partial), ref)
    size = int(engine.run("image", "inspect", "--format", "{{.Size}}", ref))
    archive.with_suffix(".json").write_text(json.dumps({"ref": ref, "size_bytes": size}) + "\n")
    partial.rename(archive)
    return BuiltImage(name=recipe.name, ref=ref, archive=archive, size_bytes=size)


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    # One build at a time per machine: two builders would race on contexts and archives.
    path = images_cache() / "build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


Progress = Callable[[str, str, float], None]


def build(
    names: Sequence[str] | None = None, keep_engine: bool = False, progress: Progress | None = None
) -> dict[str, BuiltImage]:
    """Builds (or finds cached) images; returns {name: BuiltImage}. Cached call: no Docker start."""
    the_plan = plan(names)
    built: dict[str, BuiltImage] = {}
    missing: list[Recipe] = []
    for recipe in the_plan.recipes:
        hit = _cached(recipe.name, the_plan.refs[recipe.name])
        if hit is None:
            missing.append(recipe)
        else:
            built[recipe.name] = hit
            if progress:
                progress(recipe.name, "cached", 0.0)
    if missing:
        pins = load_pins()
        revision = _git_revision()
        with build_lock(), docker_engine(keep=keep_engine) as engine:
            for recipe in missing:
                ref = the_plan.refs[recipe.name]
                hit = _cached(recipe.name, ref)  # another builder may have finished it meanwhile
                if hit is None:
                    if progress:
                        progress(recipe.name, "building", 0.0)
                    start = time.monotonic()
                    hit = _build_one(engine, recipe, ref, the_plan, pins=pins, revision=revision)
                    if progress:
                        progress(recipe.name, "built", time.monotonic() - start)
                built[recipe.name] = hit
    return {r.name: built[r.name] for r in the_plan.recipes}


def load_into(engine: Engine, image: BuiltImage) -> None:
    """Makes sure the engine has the image (after its data dir was wiped, from the archive)."""
    if not engine.run("image", "inspect", "--format", "{{.Id}}", image.ref, check=False):
        engine.run("load", "--input", str(image.archive))
