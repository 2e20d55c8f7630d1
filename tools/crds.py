"""Extract the operators' CRDs from their pinned upstream packages into ``.tools/crds/`` (issue 13).

The stack installs the CRDs the operators reconcile; they are never retyped or copied into the
repository. Each comes from the release the operator image runs:

- dask-kubernetes: the CRDs shipped inside the pinned wheel (root uv.lock), under the operator's
  Helm chart directory of the package;
- KubeRay: ``config/crd/bases`` of the ``ray-operator`` Go module at ``KUBERAY_VERSION``, fetched
  with ``go mod download`` (the module cache is checksum-verified against the Go checksum database).

``python -m tools.crds extract`` (the ``crds`` step of tools/install) writes
``.tools/crds/<operator>/`` with the files byte-for-byte and a ``VERSION`` file; the Pulumi program
reads them from there (infra/components/operators/crds.py).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

from tools.paths import TOOLS_DIR
from tools.versions import pinned_versions

CRDS_DIR = TOOLS_DIR / "crds"
DASK = "dask-kubernetes"
KUBERAY = "kuberay"
KUBERAY_MODULE = "github.com/ray-project/kuberay/ray-operator"
# Where the wheel keeps the CRDs its Helm chart installs (dask_kubernetes/operator/deployment/...).
DASK_CRDS_IN_PACKAGE = Path("operator", "deployment", "helm", "dask-kubernetes-operator", "crds")


class CrdSourceError(RuntimeError):
    """An upstream package does not have the CRDs where expected; the message says what to do."""


def dask_source() -> tuple[str, Path]:
    """(version, directory) of the CRDs in the installed, locked dask-kubernetes wheel."""
    try:
        version = importlib.metadata.version(DASK)
    except importlib.metadata.PackageNotFoundError:
        raise CrdSourceError(f"{DASK} is not installed in this venv; run tools/install venv") from None
    import dask_kubernetes  # type: ignore[import-untyped]  # noqa: PLC0415 - only to locate the package

    source = Path(dask_kubernetes.__file__).parent / DASK_CRDS_IN_PACKAGE
    if not sorted(source.glob("*.yaml")):
        raise CrdSourceError(
            f"{DASK} {version} has no CRDs at {source}; its layout changed, update DASK_CRDS_IN_PACKAGE"
        )
    return version, source


def kuberay_source(version: str | None = None) -> tuple[str, Path]:
    """(version, directory) of ``config/crd/bases`` of the ray-operator module at KUBERAY_VERSION."""
    version = version or pinned_versions()["KUBERAY_VERSION"]
    try:
        out = subprocess.run(
            ["go", "mod", "download", "-json", f"{KUBERAY_MODULE}@{version}"],
            check=True,
            capture_output=True,
            text=True,
            cwd="/",
        ).stdout
    except FileNotFoundError:
        raise CrdSourceError("go is not on PATH; install Go 1.24+ to fetch the KubeRay module") from None
    except subprocess.CalledProcessError as exc:
        raise CrdSourceError(
            f"go mod download {KUBERAY_MODULE}@{version} failed: {exc.stdout or exc.stderr}; "
            "pick a served KUBERAY_VERSION in tools/versions.env"
        ) from None
    source = Path(json.loads(out)["Dir"]) / "config" / "crd" / "bases"
    if not sorted(source.glob("*.yaml")):
        raise CrdSourceError(f"{KUBERAY_MODULE}@{version} has no CRDs at {source}")
    return version, source


def copy_crds(name: str, version: str, source: Path, dest_root: Path = CRDS_DIR) -> Path:
    """Replaces ``dest_root/name`` with the YAML files of ``source`` and a VERSION file."""
    dest = dest_root / name
    tmp = dest_root / f"{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in sorted(source.glob("*.yaml")):
        shutil.copyfile(path, tmp / path.name)
    (tmp / "VERSION").write_text(version + "\n", encoding="utf-8")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def extract(dest_root: Path = CRDS_DIR) -> list[Path]:
    return [
        copy_crds(name, *source(), dest_root=dest_root)
        for name, source in ((DASK, dask_source), (KUBERAY, kuberay_source))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.crds", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["extract"])
    parser.parse_args(argv)
    try:
        for path in extract():
            files = sorted(p.name for p in path.glob("*.yaml"))
            print(f"{path.name} {(path / 'VERSION').read_text().strip()}: {', '.join(files)} -> {path}")
    except CrdSourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
