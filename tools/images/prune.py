"""Dropping what no current recipe refers to: old archives, base tarballs, wheelhouses, images.

Every tag change leaves the previous build behind (an image can be 1-2 GB), so the cache grows with
each recipe edit; `python -m tools.images prune` keeps exactly what the current tags need.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tools.images import wheels
from tools.images.builder import build_lock, plan
from tools.images.daemon import docker_engine, images_cache


@dataclass
class Pruned:
    files: list[Path] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    freed_bytes: int = 0


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _drop(path: Path, result: Pruned) -> None:
    result.freed_bytes += _size(path)
    result.files.append(path)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def prune(with_engine: bool = True) -> Pruned:
    """Removes cache entries and engine images that the current recipes do not use."""
    current = plan(None)
    keep_refs = set(current.refs.values()) | set(current.base_refs.values())
    keep_archives = {f"{ref.split('/', 1)[1].replace(':', '-')}" for ref in current.refs.values()}
    keep_bases = {
        f"{ref.split('/', 1)[1].removeprefix('base-').replace(':', '-')}" for ref in current.base_refs.values()
    }
    keep_houses = {wheels.house_key(r.requirements) for r in current.recipes if r.requirements}
    cache = images_cache()
    result = Pruned()
    with build_lock():
        for path in sorted((cache / "archives").glob("*")):
            if path.name.rsplit(".", 1)[0] not in keep_archives:
                _drop(path, result)
        for path in sorted((cache / "bases").glob("*")):
            if path.name.removesuffix(".tar") not in keep_bases:
                _drop(path, result)
        for path in sorted((cache / "wheelhouse").glob("*")):
            if path.name not in keep_houses:
                _drop(path, result)
        for path in sorted((cache / "contexts").glob("*")):  # left by failed builds only
            _drop(path, result)
        if with_engine:
            with docker_engine() as engine:
                listed = engine.run("images", "--format", "{{.Repository}}:{{.Tag}}", "qframe/*")
                for ref in listed.splitlines():
                    if ref and ref not in keep_refs and not ref.endswith(":<none>"):
                        engine.run("rmi", ref, check=False)
                        result.images.append(ref)
                engine.run("image", "prune", "--force")
    return result
