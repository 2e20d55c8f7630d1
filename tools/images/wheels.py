"""Python dependencies for images: hashed requirements (lock) and the wheelhouse (download).

`lock` compiles images/<name>/requirements.in with uv for CPython 3.11 on manylinux x86_64,
constrained by the root uv.lock so an image runs the same versions the tests ran. `wheelhouse`
downloads exactly those files (binary only, hashes checked) into a cache keyed by the
requirements file, so `docker build` installs them with `--no-index`.

A package published only as a source distribution is allowed when the recipe names it in
image.toml's `sdists`. `lock` then also pins (hashed, wheels only) the build backend those sdists
declare into requirements-build.txt. `wheelhouse` downloads the sdist (its locked hash checked),
builds it with that backend in a throw-away venv with no index and no build isolation (nothing is
fetched while building), refuses anything but a pure-Python wheel, and writes the house's own
requirements.txt: the locked one with the built wheel's sha256 added to that package's hashes, so
`pip install --require-hashes` still checks every file it installs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tools.images.daemon import images_cache
from tools.images.recipes import Recipe
from tools.paths import REPO_ROOT, TOOLS_BIN

PYTHON_VERSION = "3.11"
# Debian bookworm's glibc is 2.36: any manylinux wheel up to that runs in the python bases.
GLIBC_MINOR = 36
UV_PLATFORM = f"x86_64-manylinux_2_{GLIBC_MINOR}"
BUILD_REQUIREMENTS = "requirements-build.txt"
HOUSE_REQUIREMENTS = "requirements.txt"
# PEP 517's fallback for an sdist without [build-system]: setuptools' legacy backend.
LEGACY_BUILD_REQUIRES = ("setuptools>=40.8.0", "wheel")
# Built wheels get this timestamp in their zip entries (reproducible bytes from the same sdist).
SOURCE_DATE_EPOCH = "315532800"


class WheelError(RuntimeError):
    """Locking or downloading failed; the message carries the tool's output and the fix."""


def pip_platforms() -> list[str]:
    return ["manylinux2014_x86_64"] + [f"manylinux_2_{m}_x86_64" for m in range(17, GLIBC_MINOR + 1)]


def _uv() -> str:
    uv = TOOLS_BIN / "uv"
    if not uv.exists():
        raise WheelError("uv is not installed in .tools/bin\n  fix: tools/install uv")
    return str(uv)


def _run(command: list[str], what: str, cwd: Path = REPO_ROOT) -> str:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise WheelError(f"{what} failed:\n{(done.stderr or done.stdout)[-3000:]}")
    return done.stdout


def lock_constraints(out: Path) -> Path:
    """The root uv.lock as a constraints file (every locked version, no hashes, no workspace)."""
    _run(
        [_uv(), "export", "--frozen", "--all-packages", "--all-extras", "--no-hashes", "--no-emit-workspace",
         "--no-header", "--no-annotate", "--output-file", str(out)],
        "uv export of uv.lock",
    )  # fmt: skip
    return out


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_sdists(folder: Path) -> tuple[str, ...]:
    """The packages images/<name>/image.toml allows as source distributions (normalized names)."""
    toml = folder / "image.toml"
    if not toml.is_file():
        return ()
    value = tomllib.loads(toml.read_text(encoding="utf-8")).get("sdists", [])
    return tuple(sorted(_normalize(v) for v in value))


@dataclass(frozen=True)
class Pinned:
    """One `name==version` line of a hashed requirements file, continuation lines joined."""

    name: str
    version: str
    hashes: tuple[str, ...]
    text: str


def parse_hashed(text: str) -> list[Pinned]:
    """The pins of a `uv pip compile --generate-hashes` file (comments and blank lines dropped)."""
    pins: list[Pinned] = []
    logical = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        logical += " " + line.rstrip("\\").strip()
        if line.endswith("\\"):
            continue
        requirement, *options = logical.split()
        logical = ""
        name, sep, version = requirement.partition("==")
        if not sep:
            raise WheelError(
                f"requirement {requirement!r} is not pinned with ==\n  fix: relock it with tools.images lock"
            )
        name = name.split("[", 1)[0]
        hashes = tuple(o.removeprefix("--hash=") for o in options if o.startswith("--hash="))
        pins.append(Pinned(_normalize(name), version.split(";", 1)[0].strip(), hashes, requirement))
    return pins


def _render_hashed(pins: list[Pinned]) -> str:
    lines = []
    for pin in pins:
        lines.append(" \\\n".join([pin.text, *(f"    --hash={h}" for h in pin.hashes)]))
    return "\n".join(lines) + "\n"


def _download_sdists(pins: list[Pinned], dest: Path, scratch: Path) -> list[Path]:
    """The pinned sdists, their locked hashes checked (no platform: a source archive is universal)."""
    wanted = scratch / "sdists.txt"
    wanted.write_text(_render_hashed(pins), encoding="utf-8")
    dest.mkdir(parents=True, exist_ok=True)
    _run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
         "--no-binary=:all:", "--dest", str(dest), "-r", str(wanted)],
        "pip download of the declared sdists",
    )  # fmt: skip
    found = sorted(p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".zip")))
    if len(found) != len(pins):
        raise WheelError(f"expected {len(pins)} sdists, found {[p.name for p in found]} in {dest}")
    return found


def _build_requires(sdist: Path) -> list[str]:
    """The sdist's [build-system].requires, or PEP 517's legacy setuptools fallback."""
    text = None
    if sdist.name.endswith(".tar.gz"):
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith("/pyproject.toml")]
            if members and (handle := archive.extractfile(members[0])) is not None:
                text = handle.read().decode("utf-8")
    else:
        with zipfile.ZipFile(sdist) as archive:
            names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/pyproject.toml")]
            if names:
                text = archive.read(names[0]).decode("utf-8")
    system = tomllib.loads(text).get("build-system", {}) if text else {}
    return list(system.get("requires", LEGACY_BUILD_REQUIRES))


def lock(recipe: Recipe) -> Path:
    """(Re)writes images/<name>/requirements.txt from requirements.in (and requirements-build.txt)."""
    source = recipe.folder / "requirements.in"
    if not source.is_file():
        raise WheelError(f"images/{recipe.name} has no requirements.in\n  fix: add one with its top-level packages")
    constraints = lock_constraints(images_cache() / f"constraints-{recipe.name}.txt")
    target = recipe.folder / "requirements.txt"
    sdists = declared_sdists(recipe.folder)
    # Wheels only, except the packages the recipe allows as sdists (each built by `wheelhouse`).
    allow_source = [arg for name in sdists for arg in ("--no-binary", name)]
    _run(
        [_uv(), "pip", "compile", str(source), "--output-file", str(target), "--generate-hashes",
         "--python-version", PYTHON_VERSION, "--python-platform", UV_PLATFORM, "--only-binary", ":all:",
         *allow_source, "--constraint", str(constraints), "--no-header", "--no-annotate", "--quiet"],
        f"uv pip compile for images/{recipe.name}",
    )  # fmt: skip
    header = (
        f"# Generated by `python -m tools.images lock {recipe.name}` from requirements.in (CPython {PYTHON_VERSION},\n"
        f"# {UV_PLATFORM}, versions constrained by the root uv.lock). Do not edit by hand.\n"
    )
    target.write_text(header + target.read_text(encoding="utf-8"), encoding="utf-8")
    build_target = recipe.folder / BUILD_REQUIREMENTS
    if not sdists:
        build_target.unlink(missing_ok=True)
        return target
    pins = [p for p in parse_hashed(target.read_text(encoding="utf-8")) if p.name in sdists]
    missing = sorted(set(sdists) - {p.name for p in pins})
    if missing:
        raise WheelError(
            f"images/{recipe.name}/image.toml sdists {missing} are not in the locked requirements\n"
            "  fix: drop them from sdists"
        )
    scratch = images_cache() / f"lock-{recipe.name}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    requires = sorted({r for sdist in _download_sdists(pins, scratch / "src", scratch) for r in _build_requires(sdist)})
    (scratch / "build.in").write_text("\n".join(requires) + "\n", encoding="utf-8")
    # The backend runs on the build host's CPython 3.11 (the same minor as the images), wheels only.
    _run(
        [_uv(), "pip", "compile", str(scratch / "build.in"), "--output-file", str(build_target), "--generate-hashes",
         "--python-version", PYTHON_VERSION, "--python-platform", UV_PLATFORM, "--only-binary", ":all:",
         "--no-header", "--no-annotate", "--quiet"],
        f"uv pip compile of the build backend for images/{recipe.name}",
    )  # fmt: skip
    build_header = (
        f"# Generated by `python -m tools.images lock {recipe.name}`: the build backend of the sdists allowed in\n"
        f"# image.toml ({', '.join(sdists)}); used only by the wheelhouse to build them. Do not edit by hand.\n"
    )
    build_target.write_text(build_header + build_target.read_text(encoding="utf-8"), encoding="utf-8")
    shutil.rmtree(scratch, ignore_errors=True)
    return target


def house_key(requirements: Path) -> str:
    """The wheelhouse's cache key: the locked requirements, the build backend's pins and the sdists allowed."""
    hasher = hashlib.sha256(requirements.read_bytes())
    build = requirements.with_name(BUILD_REQUIREMENTS)
    if build.is_file():
        hasher.update(b"\0build\0" + build.read_bytes())
    for name in declared_sdists(requirements.parent):
        hasher.update(b"\0sdist\0" + name.encode())
    return hasher.hexdigest()[:16]


def _build_pure_wheels(sdists: list[Path], build_requirements: Path, out: Path, scratch: Path) -> list[Path]:
    """Builds each sdist offline with the hashed backend; only pure-Python wheels are accepted."""
    backend = scratch / "backend"
    _run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes", "--only-binary=:all:",
         "--dest", str(backend), "-r", str(build_requirements)],
        f"pip download of the build backend {build_requirements}",
    )  # fmt: skip
    venv = scratch / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], "venv for building sdists")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _run(
        [*pip, "install", "--quiet", "--no-index", "--find-links", str(backend), "--require-hashes",
         "-r", str(build_requirements)],
        "installing the build backend",
    )  # fmt: skip
    built_dir = scratch / "built"
    env_note = {"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    for sdist in sdists:
        command = [*pip, "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
                   "--wheel-dir", str(built_dir), str(sdist)]  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, cwd=scratch, env={**os.environ, **env_note}
        )
        if done.returncode != 0:
            raise WheelError(f"building {sdist.name} failed:\n{(done.stderr or done.stdout)[-3000:]}")
    built = sorted(built_dir.glob("*.whl"))
    impure = [w.name for w in built if not w.name.endswith("-none-any.whl")]
    if impure or len(built) != len(sdists):
        raise WheelError(
            f"sdists must build exactly one pure-Python wheel each (*-none-any.whl), got {[w.name for w in built]}\n"
            "  fix: use a version with a published wheel, or drop the package from image.toml sdists"
        )
    out.mkdir(parents=True, exist_ok=True)
    for wheel in built:
        shutil.move(str(wheel), out / wheel.name)
    return [out / w.name for w in built]


def wheelhouse(requirements: Path) -> Path:
    """A folder holding exactly the wheels of a hashed requirements file (cached by its content).

    The folder also holds `requirements.txt` (HOUSE_REQUIREMENTS): the file to install with
    `--require-hashes`; it equals the locked one unless wheels were built from allowed sdists.
    """
    key = house_key(requirements)
    house = images_cache() / "wheelhouse" / key
    if (house / ".complete").is_file():
        return house
    partial = house.with_name(key + ".tmp")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    scratch = house.with_name(key + ".scratch")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    sdists = set(declared_sdists(requirements.parent))
    pins = parse_hashed(requirements.read_text(encoding="utf-8"))
    binary = [p for p in pins if p.name not in sdists]
    source = [p for p in pins if p.name in sdists]
    binaries = scratch / "binary.txt"
    binaries.write_text(_render_hashed(binary), encoding="utf-8")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
               "--only-binary=:all:", "--implementation", "cp", "--python-version", PYTHON_VERSION,
               "--abi", "cp311", "--abi", "abi3", "--abi", "none",
               "--dest", str(partial), "-r", str(binaries)]  # fmt: skip
    for platform in pip_platforms():
        command += ["--platform", platform]
    _run(command, f"pip download for {requirements}")
    installable = list(pins)
    if source:
        build_requirements = requirements.with_name(BUILD_REQUIREMENTS)
        if not build_requirements.is_file():
            raise WheelError(
                f"{requirements.parent.name} allows sdists but has no {BUILD_REQUIREMENTS}\n"
                f"  fix: python -m tools.images lock {requirements.parent.name}"
            )
        downloaded = _download_sdists(source, scratch / "src", scratch)
        built = _build_pure_wheels(downloaded, build_requirements, partial, scratch)
        digests = {}
        for wheel in built:
            digests[_normalize(wheel.name.split("-", 1)[0])] = (
                "sha256:" + hashlib.sha256(wheel.read_bytes()).hexdigest()
            )
        installable = [
            Pinned(p.name, p.version, (*p.hashes, digests[p.name]), p.text) if p.name in digests else p for p in pins
        ]
    (partial / HOUSE_REQUIREMENTS).write_text(
        f"# {requirements.name} as installed from this wheelhouse (built sdists carry their wheel's hash too).\n"
        + _render_hashed(installable),
        encoding="utf-8",
    )
    shutil.rmtree(scratch, ignore_errors=True)
    (partial / ".complete").touch()
    partial.rename(house)
    return house


def local_wheel(project: Path, out_dir: Path) -> None:
    """Builds a workspace project's wheel (e.g. platform/) into out_dir."""
    if not (project / "pyproject.toml").is_file():
        raise WheelError(f"{project} has no pyproject.toml\n  fix: point wheel:<dir> at a Python project")
    _run([_uv(), "build", "--wheel", "--out-dir", str(out_dir), str(project)], f"uv build of {project}")
