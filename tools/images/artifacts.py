"""Binaries the recipes copy in (`tool:<name>` inputs), and how to get them when missing.

They are the same builds tools/install makes for the local services (cached in
~/.cache/qframe-tools by version), so an image carries exactly the pinned tool.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tools.paths import REPO_ROOT


def tools_cache() -> Path:
    return Path(os.environ.get("QFRAME_TOOLS_CACHE", Path.home() / ".cache" / "qframe-tools"))


@dataclass(frozen=True)
class Tool:
    """A pinned build in the tools cache: where it lands and which tools/install step makes it."""

    version_keys: tuple[str, ...]
    location: Callable[[Mapping[str, str], Path], Path]
    install_step: str
    # Go package to `go install` when tools/install has no step for it yet (CGO off, static).
    go_package: str = ""


TOOLS: dict[str, Tool] = {
    "minio": Tool(
        version_keys=("MINIO_VERSION",),
        location=lambda pins, cache: cache / f"minio-{pins['MINIO_VERSION']}" / "bin" / "minio",
        install_step="minio",
    ),
    "kafka-lib": Tool(
        version_keys=("KAFKA_SCALA_VERSION", "KAFKA_VERSION", "SLF4J_VERSION"),
        location=lambda pins, cache: (
            cache / f"kafka-{pins['KAFKA_SCALA_VERSION']}-{pins['KAFKA_VERSION']}-slf4j-{pins['SLF4J_VERSION']}" / "lib"
        ),
        install_step="kafka",
    ),
    "kuberay-operator": Tool(
        version_keys=("KUBERAY_VERSION",),
        location=lambda pins, cache: cache / f"kuberay-{pins['KUBERAY_VERSION']}" / "bin" / "kuberay-operator",
        install_step="kuberay",
    ),
    "coredns": Tool(
        version_keys=("COREDNS_VERSION",),
        location=lambda pins, cache: cache / f"coredns-{pins['COREDNS_VERSION']}" / "bin" / "coredns",
        install_step="coredns",
        go_package="github.com/coredns/coredns",
    ),
}


class ToolMissingError(RuntimeError):
    """A tool input could not be found or built; the message names the command to run."""


def _install_has_step(step: str) -> bool:
    return f"step_{step}()" in (REPO_ROOT / "tools" / "install").read_text(encoding="utf-8")


def _go_install(tool: Tool, pins: Mapping[str, str], target: Path, log: Path) -> None:
    version = pins[tool.version_keys[0]]
    staging = target.parent.parent / (target.parent.parent.name + ".tmp")
    env = {**os.environ, "GOBIN": str(staging / "bin"), "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    with log.open("w") as out:
        done = subprocess.run(
            ["go", "install", "-trimpath", "-ldflags", "-s -w", f"{tool.go_package}@{version}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        raise ToolMissingError(f"go install {tool.go_package}@{version} failed (log: {log})")
    staging.rename(target.parent.parent)


def ensure_tool(name: str, pins: Mapping[str, str], log_dir: Path) -> Path:
    """Path of the tool's build, building it (tools/install <step>, or go install) when absent."""
    tool = TOOLS[name]
    cache = tools_cache()
    path = tool.location(pins, cache)
    if path.exists():
        return path
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"tool-{name}.log"
    if _install_has_step(tool.install_step):
        with log.open("w") as out:
            subprocess.run(
                [str(REPO_ROOT / "tools" / "install"), tool.install_step],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
    elif tool.go_package:
        _go_install(tool, pins, path, log)
    if not path.exists():
        raise ToolMissingError(
            f"tool input {name!r} is missing at {path} (log: {log})\n  fix: run tools/install {tool.install_step}"
        )
    return path


def maven_jars(pom: Path, properties: Mapping[str, str], log_dir: Path) -> Path:
    """The runtime jars of a recipe's pom.xml (Maven Central), cached by pom + properties."""
    key_source = pom.read_bytes() + repr(sorted(properties.items())).encode()
    key = hashlib.sha256(key_source).hexdigest()[:16]
    cache = Path(os.environ.get("QFRAME_IMAGES_CACHE", Path.home() / ".cache" / "qframe-images")) / "maven" / key
    if (cache / ".complete").is_file():
        return cache / "lib"
    if shutil.which("mvn") is None:
        raise ToolMissingError("Maven is not installed\n  fix: apt-get install -y maven (or tools/install kafka)")
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"maven-{pom.parent.name}.log"
    command = ["mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={cache / 'lib'}"]
    command += ["-DincludeScope=runtime", *(f"-D{k}={v}" for k, v in sorted(properties.items()))]
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not any((cache / "lib").glob("*.jar")):
        raise ToolMissingError(f"mvn dependency:copy-dependencies for {pom} failed (log: {log})\n  fix: read the log")
    (cache / ".complete").touch()
    return cache / "lib"


def npm_modules(project: Path, log_dir: Path) -> Path:
    """node_modules of a recipe folder's package-lock.json (`npm ci`, integrity-checked, no install
    scripts, no dev dependencies), cached by package.json + lock."""
    lock = project / "package-lock.json"
    if not lock.is_file() or not (project / "package.json").is_file():
        raise ToolMissingError(
            f"{project} needs package.json and package-lock.json\n"
            f"  fix: cd {project} && npm install --package-lock-only --ignore-scripts"
        )
    key = hashlib.sha256((project / "package.json").read_bytes() + b"\0" + lock.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("QFRAME_IMAGES_CACHE", Path.home() / ".cache" / "qframe-images")) / "npm" / key
    if (cache / ".complete").is_file():
        return cache / "node_modules"
    if shutil.which("npm") is None:
        raise ToolMissingError("npm is not installed\n  fix: apt-get install -y npm")
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    shutil.copy2(project / "package.json", cache)
    shutil.copy2(lock, cache)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"npm-{project.parent.name}-{project.name}.log"
    # --no-bin-links: no .bin symlinks (the context copy would flatten them); images put the
    # package's own bin directory on PATH instead.
    command = ["npm", "ci", "--omit=dev", "--ignore-scripts", "--no-bin-links", "--no-audit", "--no-fund"]
    with log.open("w") as out:
        done = subprocess.run(command, cwd=cache, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not (cache / "node_modules").is_dir():
        raise ToolMissingError(f"npm ci for {project} failed (log: {log})\n  fix: read the log")
    (cache / ".complete").touch()
    return cache / "node_modules"
