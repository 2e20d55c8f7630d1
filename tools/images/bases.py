"""Base images: one debootstrap minbase rootfs per flavour (images/bases.toml), imported into Docker.

Debian packages reach images this way, outside any `docker build`, so builds need no network.
The rootfs tarball is cached by its content tag; re-importing it after the Docker data dir was
wiped costs seconds.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tools.images.daemon import Engine, images_cache
from tools.images.recipes import Flavour
from tools.images.tags import base_tag

# Run in the fresh rootfs (cwd) after debootstrap: drop what no container needs. Part of the tag.
TRIM_SCRIPT = """set -eu
rm -rf var/lib/apt/lists/* var/cache/apt/* var/cache/debconf/*-old var/log/* tmp/* var/tmp/*
rm -rf usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/lintian usr/share/linda
find usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
rm -f etc/resolv.conf etc/hostname etc/machine-id var/lib/dbus/machine-id
: > etc/machine-id
"""

_DEFAULT_MIRROR = "http://deb.debian.org/debian"


class BaseError(RuntimeError):
    """A base rootfs could not be made; the message points at the log and the fix."""


def base_ref(flavour: Flavour, pins: Mapping[str, str]) -> str:
    return f"qframe/base-{flavour.name}:{base_tag(flavour, pins, TRIM_SCRIPT)}"


def apt_mirror(sources: tuple[Path, ...] = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))) -> str:
    """The Debian mirror apt already uses (deb822 `URIs:` or one-line `deb` entries)."""
    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            files += sorted(src.glob("*.sources")) + sorted(src.glob("*.list"))
        elif src.is_file():
            files.append(src)
    for path in files:
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s*)?)(\S+)", path.read_text(errors="replace"), re.M):
            uri = match.group(1).rstrip("/")
            if uri.endswith("/debian"):
                return uri
    return _DEFAULT_MIRROR


def installed_debootstrap() -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "debootstrap"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def _make_rootfs_tar(flavour: Flavour, pins: Mapping[str, str], tarball: Path, log: Path) -> None:
    version = installed_debootstrap()
    if version != pins["DEBOOTSTRAP_VERSION"]:
        raise BaseError(
            f"debootstrap {version or '(not installed)'} is installed but {pins['DEBOOTSTRAP_VERSION']} is pinned\n"
            "  fix: apt-get install -y debootstrap, then set DEBOOTSTRAP_VERSION in images/versions.env to the "
            "installed version (base tags change with it)"
        )
    cache = images_cache()
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    rootfs = tarball.with_suffix(".rootfs")
    shutil.rmtree(rootfs, ignore_errors=True)
    command = ["debootstrap", "--variant=minbase", f"--cache-dir={debs}"]
    if flavour.packages:
        command.append("--include=" + ",".join(flavour.packages))
    command += [pins["DEBIAN_SUITE"], str(rootfs), apt_mirror()]
    with log.open("w") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        steps = [command, ["sh", "-c", TRIM_SCRIPT]]
        if flavour.remove:
            steps.append(["rm", "-rf", "--", *(path.lstrip("/") for path in flavour.remove)])
        for step in steps:
            done = subprocess.run(
                step, cwd=rootfs if step is not command else None, stdout=out, stderr=subprocess.STDOUT, check=False
            )
            if done.returncode != 0:
                shutil.rmtree(rootfs, ignore_errors=True)
                mirror = apt_mirror()
                raise BaseError(
                    f"base {flavour.name}: {step[0]} failed (log: {log})\n  fix: read the log (mirror: {mirror})"
                )
        partial = tarball.with_suffix(".tar.tmp")
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )
    partial.rename(tarball)
    shutil.rmtree(rootfs, ignore_errors=True)


def ensure_base(engine: Engine, flavour: Flavour, pins: Mapping[str, str]) -> str:
    """The base's image ref, present in the engine (debootstrap + import only when missing)."""
    ref = base_ref(flavour, pins)
    if engine.run("image", "inspect", "--format", "{{.Id}}", ref, check=False):
        return ref
    cache = images_cache()
    (cache / "bases").mkdir(parents=True, exist_ok=True)
    (cache / "logs").mkdir(parents=True, exist_ok=True)
    tarball = cache / "bases" / f"{flavour.name}-{ref.rsplit(':', 1)[1]}.tar"
    if not tarball.is_file():
        _make_rootfs_tar(flavour, pins, tarball, cache / "logs" / f"base-{flavour.name}.log")
    engine.run(
        "import",
        "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change", "ENV LANG=C.UTF-8",
        "--change", 'CMD ["/bin/sh"]',
        "--message", f"debootstrap {pins['DEBIAN_SUITE']} minbase + {' '.join(flavour.packages) or 'nothing'}",
        str(tarball),
        ref,
    )  # fmt: skip
    return ref
