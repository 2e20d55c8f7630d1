"""Content tags: sha256 over what goes into an image, first 12 hex digits.

Tags are computed from files and pins only (never from a built image id), so every machine gets the
same tags without building anything and `tags --check` can run in the unit tier.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from tools.images.artifacts import TOOLS
from tools.images.recipes import Flavour, Recipe
from tools.paths import REPO_ROOT

TAG_LENGTH = 12
# Bump when the way images are assembled changes without any recipe changing (labels, build args).
BUILDER_FORMAT = "1"
# Files that never influence an image (caches, editor droppings).
_IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "node_modules", ".venv"}
_IGNORED_SUFFIXES = (".pyc", ".pyo", "~", ".swp")


def _short(hasher: hashlib._Hash) -> str:
    return hasher.hexdigest()[:TAG_LENGTH]


def folder_files(folder: Path) -> list[Path]:
    """The files that make up a folder's content, sorted, caches excluded."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not _IGNORED_PARTS.intersection(p.relative_to(folder).parts)
        and not p.name.endswith(_IGNORED_SUFFIXES)
    )


def folder_digest(folder: Path) -> str:
    """sha256 over (relative path, bytes) of every file: renames and edits both change it."""
    hasher = hashlib.sha256()
    for path in folder_files(folder):
        hasher.update(path.relative_to(folder).as_posix().encode() + b"\0")
        hasher.update(hashlib.sha256(path.read_bytes()).digest())
    return hasher.hexdigest()


def _json_digest(identity: Mapping[str, object]) -> str:
    hasher = hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode())
    return _short(hasher)


def base_identity(flavour: Flavour, pins: Mapping[str, str], trim_script: str) -> dict[str, object]:
    """What a base rootfs is made from; the mirror is left out (same packages from any mirror)."""
    identity: dict[str, object] = {
        "flavour": flavour.name,
        "packages": list(flavour.packages),
        "suite": pins["DEBIAN_SUITE"],
        "debootstrap": pins["DEBOOTSTRAP_VERSION"],
        "variant": "minbase",
        "trim": hashlib.sha256(trim_script.encode()).hexdigest(),
    }
    if flavour.remove:  # only when used, so flavours without removals keep their tags
        identity["remove"] = list(flavour.remove)
    return identity


def base_tag(flavour: Flavour, pins: Mapping[str, str], trim_script: str) -> str:
    return _json_digest(base_identity(flavour, pins, trim_script))


def input_identity(source: str, pins: Mapping[str, str], repo_root: Path = REPO_ROOT) -> str:
    """A staged input's identity: a tool by its pinned versions, a local wheel by its sources."""
    kind, _, name = source.partition(":")
    if kind == "tool":
        if name not in TOOLS:
            raise ValueError(f"unknown tool input {source!r}; known: {sorted(TOOLS)}")
        return f"{source}@" + ",".join(f"{k}={pins[k]}" for k in TOOLS[name].version_keys)
    if kind == "wheel":
        project = repo_root / name
        if not (project / "pyproject.toml").is_file():
            raise ValueError(f"wheel input {source!r}: {project} has no pyproject.toml")
        return f"{source}@{folder_digest(project)}"
    if kind == "maven":
        # The pom is a recipe file (already in the recipe digest); its versions come from `versions`.
        return source
    if kind == "npm":
        # package.json + package-lock.json are recipe files (already in the recipe digest).
        return source
    raise ValueError(f"input source {source!r} must start with tool:, wheel:, maven: or npm:")


def image_identity(
    recipe: Recipe, pins: Mapping[str, str], base_tags: Mapping[str, str], repo_root: Path = REPO_ROOT
) -> dict[str, object]:
    return {
        "builder": BUILDER_FORMAT,
        "name": recipe.name,
        "recipe": folder_digest(recipe.folder),
        "versions": {k: pins[k] for k in recipe.versions},
        "inputs": {dest: input_identity(src, pins, repo_root) for dest, src in recipe.inputs.items()},
        "bases": {b: base_tags[b] for b in recipe.bases},
    }


def image_tag(
    recipe: Recipe, pins: Mapping[str, str], base_tags: Mapping[str, str], repo_root: Path = REPO_ROOT
) -> str:
    return _json_digest(image_identity(recipe, pins, base_tags, repo_root))


def all_tags(
    recipes: Iterable[Recipe], flavours: Mapping[str, Flavour], pins: Mapping[str, str], trim_script: str
) -> tuple[dict[str, str], dict[str, str]]:
    """(base tags by flavour, image tags by name) for the given recipes."""
    bases = {name: base_tag(f, pins, trim_script) for name, f in flavours.items()}
    return bases, {r.name: image_tag(r, pins, bases) for r in recipes}
