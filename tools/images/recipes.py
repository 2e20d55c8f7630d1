"""Reading images/: the recipes (images/<name>/image.toml), the base flavours and the pins.

Everything here is pure reading and validation; a malformed recipe raises RecipeError naming the
file, the key and the fix, before anything is built.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tools.paths import REPO_ROOT
from tools.versions import VERSIONS_FILE, parse_versions

IMAGES_DIR = REPO_ROOT / "images"
BASES_FILE = IMAGES_DIR / "bases.toml"
IMAGE_VERSIONS_FILE = IMAGES_DIR / "versions.env"

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_RECIPE_KEYS = {"title", "description", "uid", "bases", "versions", "probe", "serve", "inputs", "sdists"}
_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_INPUT_SOURCE = re.compile(r"^(tool|wheel|maven|npm):[A-Za-z0-9_./-]+$")


class RecipeError(ValueError):
    """A recipe, the flavour list or a versions file is wrong; the message says how to fix it."""


@dataclass(frozen=True)
class Flavour:
    """One Debian package set, made into one base image."""

    name: str
    packages: tuple[str, ...]
    # Paths dropped from the rootfs after debootstrap (e.g. keys a package's postinst generated).
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    """One images/<name>/ folder, as image.toml describes it."""

    name: str
    folder: Path
    title: str
    description: str
    uid: int
    bases: tuple[str, ...]
    versions: tuple[str, ...]
    probe: str
    serve: bool
    inputs: dict[str, str] = field(default_factory=dict)
    sdists: tuple[str, ...] = ()
    """Packages allowed as source distributions (built into pure-Python wheels by the wheelhouse)."""

    @property
    def requirements(self) -> Path | None:
        """The hashed requirements file, or None for an image without Python deps."""
        source, locked = self.folder / "requirements.in", self.folder / "requirements.txt"
        if source.is_file() != locked.is_file():
            raise RecipeError(
                f"images/{self.name} has only one of requirements.in / requirements.txt\n"
                f"  fix: python -m tools.images lock {self.name}"
            )
        return locked if locked.is_file() else None


def _fail(where: Path, message: str, fix: str) -> RecipeError:
    return RecipeError(
        f"{where.relative_to(REPO_ROOT) if where.is_relative_to(REPO_ROOT) else where}: {message}\n  fix: {fix}"
    )


def load_flavours(path: Path = BASES_FILE) -> dict[str, Flavour]:
    """Reads images/bases.toml into {flavour: Flavour}."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    flavours: dict[str, Flavour] = {}
    for name, body in data.items():
        if (
            not _NAME.match(name)
            or not isinstance(body, dict)
            or "packages" not in body
            or set(body) - {"packages", "remove"}
        ):
            raise _fail(
                path, f"flavour [{name}] needs a lower-case name, `packages` and optional `remove`", "see README.md"
            )
        packages = body["packages"]
        if not isinstance(packages, list) or not all(isinstance(p, str) and p for p in packages):
            raise _fail(
                path, f"[{name}].packages must be a list of Debian package names", 'e.g. packages = ["python3"]'
            )
        remove = body.get("remove", [])
        if not isinstance(remove, list) or not all(
            isinstance(r, str) and r.startswith("/") and ".." not in r for r in remove
        ):
            raise _fail(
                path, f"[{name}].remove must be a list of absolute paths", 'e.g. remove = ["/etc/ssl/private/x.key"]'
            )
        flavours[name] = Flavour(name=name, packages=tuple(sorted(packages)), remove=tuple(sorted(remove)))
    return flavours


def load_pins(shared: Path = VERSIONS_FILE, own: Path = IMAGE_VERSIONS_FILE) -> dict[str, str]:
    """tools/versions.env merged with images/versions.env; a key pinned differently in both is refused."""
    pins = parse_versions(shared.read_text(encoding="utf-8"))
    for key, value in parse_versions(own.read_text(encoding="utf-8")).items():
        if key in pins and pins[key] != value:
            raise _fail(
                own,
                f"{key}={value} disagrees with {key}={pins[key]} in tools/versions.env",
                f"drop {key} from {own.name}",
            )
        pins[key] = value
    return pins


def _str(where: Path, data: dict[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"`{key}` must be a non-empty string", f'add {key} = "..." (see images/README.md)')
    return value


def _str_list(where: Path, data: dict[str, object], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, f"`{key}` must be a list of strings", f'e.g. {key} = ["..."]')
    return tuple(value)


def parse_recipe(folder: Path, flavours: dict[str, Flavour], pins: dict[str, str]) -> Recipe:
    """Reads and checks images/<name>/image.toml."""
    where = folder / "image.toml"
    if not where.is_file():
        raise _fail(folder, "has no image.toml", "every image folder needs image.toml (see images/README.md)")
    if not (folder / "Dockerfile").is_file():
        raise _fail(folder, "has no Dockerfile", "add a Dockerfile (see images/README.md)")
    data = tomllib.loads(where.read_text(encoding="utf-8"))
    unknown = sorted(set(data) - _RECIPE_KEYS)
    if unknown:
        raise _fail(where, f"unknown keys {unknown}", f"allowed keys: {sorted(_RECIPE_KEYS)}")
    uid = data.get("uid")
    if not isinstance(uid, int) or isinstance(uid, bool) or not 1 <= uid <= 65535:
        raise _fail(where, f"`uid` must be a non-root numeric UID (1..65535), got {uid!r}", "e.g. uid = 1000")
    bases = _str_list(where, data, "bases")
    for base in bases:
        if base not in flavours:
            raise _fail(where, f"base {base!r} is not a flavour in images/bases.toml", f"one of {sorted(flavours)}")
    versions = _str_list(where, data, "versions")
    for key in versions:
        if key not in pins:
            raise _fail(
                where, f"version key {key!r} is pinned nowhere", "pin it in tools/versions.env or images/versions.env"
            )
    inputs = data.get("inputs", {})
    if not isinstance(inputs, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _INPUT_SOURCE.match(v) for k, v in inputs.items()
    ):
        raise _fail(
            where, "[inputs] must map a context path to 'tool:<name>' or 'wheel:<project dir>'", "see images/README.md"
        )
    serve = data.get("serve", False)
    if not isinstance(serve, bool):
        raise _fail(
            where, "`serve` must be true or false", "serve = true when the probe needs the default command running"
        )
    sdists = _str_list(where, data, "sdists")
    bad = [s for s in sdists if not _PACKAGE.match(s)]
    if bad or (sdists and not (folder / "requirements.in").is_file()):
        raise _fail(
            where,
            f"`sdists` must name Python packages of requirements.txt, got {list(sdists)}",
            'e.g. sdists = ["onetimepass"] in an image with requirements.in',
        )
    return Recipe(
        name=folder.name,
        folder=folder,
        title=_str(where, data, "title"),
        description=_str(where, data, "description"),
        uid=uid,
        bases=bases,
        versions=versions,
        probe=_str(where, data, "probe"),
        serve=serve,
        inputs=dict(sorted(inputs.items())),
        sdists=tuple(sorted(sdists)),
    )


def load_recipes(images_dir: Path = IMAGES_DIR) -> dict[str, Recipe]:
    """Every images/<name>/ folder with an image.toml, by name (sorted)."""
    flavours = load_flavours(images_dir / "bases.toml")
    pins = load_pins(own=images_dir / "versions.env")
    recipes: dict[str, Recipe] = {}
    for folder in sorted(p for p in images_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        if not _NAME.match(folder.name):
            raise _fail(folder, "folder name is not a valid image name", "lower-case letters, digits and '-'")
        recipes[folder.name] = parse_recipe(folder, flavours, pins)
    return recipes


def select(recipes: dict[str, Recipe], names: list[str] | tuple[str, ...] | None) -> list[Recipe]:
    """The named recipes (all when names is None/empty); an unknown name is refused with the list."""
    if not names:
        return list(recipes.values())
    unknown = [n for n in names if n not in recipes]
    if unknown:
        raise RecipeError(f"unknown image(s) {unknown}\n  fix: one of {sorted(recipes)}")
    return [recipes[n] for n in dict.fromkeys(names)]
