"""Python dependencies for images: hashed requirements (lock) and the wheelhouse (download).

`lock` compiles images/<name>/requirements.in with uv for CPython 3.11 on manylinux x86_64,
constrained by the root uv.lock so an image runs the same versions the tests ran. `wheelhouse`
downloads exactly those files (binary only, hashes checked) into a cache keyed by the
requirements file, so `docker build` installs them with `--no-index`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from tools.images.daemon import images_cache
from tools.images.recipes import Recipe
from tools.paths import REPO_ROOT, TOOLS_BIN

PYTHON_VERSION = "3.11"
# Debian bookworm's glibc is 2.36: any manylinux wheel up to that runs in the python bases.
GLIBC_MINOR = 36
UV_PLATFORM = f"x86_64-manylinux_2_{GLIBC_MINOR}"


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


def lock(recipe: Recipe) -> Path:
    """(Re)writes images/<name>/requirements.txt from requirements.in."""
    source = recipe.folder / "requirements.in"
    if not source.is_file():
        raise WheelError(f"images/{recipe.name} has no requirements.in\n  fix: add one with its top-level packages")
    constraints = lock_constraints(images_cache() / f"constraints-{recipe.name}.txt")
    target = recipe.folder / "requirements.txt"
    _run(
        [_uv(), "pip", "compile", str(source), "--output-file", str(target), "--generate-hashes",
         "--python-version", PYTHON_VERSION, "--python-platform", UV_PLATFORM, "--only-binary", ":all:",
         "--constraint", str(constraints), "--no-header", "--quiet"],
        f"uv pip compile for images/{recipe.name}",
    )  # fmt: skip
    return target


def wheelhouse(requirements: Path) -> Path:
    """A folder holding exactly the wheels of a hashed requirements file (cached by its content)."""
    key = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    house = images_cache() / "wheelhouse" / key
    if (house / ".complete").is_file():
        return house
    partial = house.with_name(key + ".tmp")
    partial.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
               "--only-binary=:all:", "--implementation", "cp", "--python-version", PYTHON_VERSION,
               "--abi", "cp311", "--abi", "abi3", "--abi", "none",
               "--dest", str(partial), "-r", str(requirements)]  # fmt: skip
    for platform in pip_platforms():
        command += ["--platform", platform]
    _run(command, f"pip download for {requirements}")
    (partial / ".complete").touch()
    partial.rename(house)
    return house


def local_wheel(project: Path, out_dir: Path) -> None:
    """Builds a workspace project's wheel (e.g. platform/) into out_dir."""
    if not (project / "pyproject.toml").is_file():
        raise WheelError(f"{project} has no pyproject.toml\n  fix: point wheel:<dir> at a Python project")
    _run([_uv(), "build", "--wheel", "--out-dir", str(out_dir), str(project)], f"uv build of {project}")
