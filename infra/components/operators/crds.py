"""The upstream CRDs of the pinned operator releases, as ``tools/crds.py`` extracted them.

The program never retypes a CRD: it reads the files ``python -m tools.crds extract`` (the ``crds``
step of tools/install) copied from the dask-kubernetes wheel and the KubeRay Go module, and refuses
to deploy a set whose VERSION differs from the pin (a stale ``.tools/crds`` after a bump).
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
CRDS_DIR = REPO_ROOT / ".tools" / "crds"
VERSIONS_FILE = REPO_ROOT / "tools" / "versions.env"
DASK = "dask-kubernetes"
KUBERAY = "kuberay"


class CrdsMissingError(RuntimeError):
    """The extracted CRDs are absent or of another release; the message says how to refresh them."""


def pinned_version(operator: str) -> str:
    """dask-kubernetes: the version locked in uv.lock (installed in the venv); KubeRay: KUBERAY_VERSION."""
    if operator == DASK:
        return importlib.metadata.version(DASK)
    match = re.search(r"^KUBERAY_VERSION=(\S+)", VERSIONS_FILE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    if match is None:
        raise CrdsMissingError(f"KUBERAY_VERSION is not set in {VERSIONS_FILE}")
    return match.group(1)


def crd_files(operator: str) -> list[Path]:
    """The CRD files of ``operator`` (``dask-kubernetes`` or ``kuberay``), sorted, of the pinned release."""
    directory = CRDS_DIR / operator
    want = pinned_version(operator)
    fix = "run `tools/install crds` (python -m tools.crds extract) to extract them from the pinned packages"
    version_file = directory / "VERSION"
    if not version_file.is_file():
        raise CrdsMissingError(f"the {operator} CRDs are not extracted at {directory}; {fix}")
    have = version_file.read_text(encoding="utf-8").strip()
    if have != want:
        raise CrdsMissingError(f"{directory} holds the {operator} {have} CRDs but {want} is pinned; {fix}")
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise CrdsMissingError(f"{directory} has no CRD files; {fix}")
    return files


@functools.cache
def load_crds(operator: str) -> tuple[dict[str, Any], ...]:
    """Every CRD of ``operator``, parsed (libyaml: the KubeRay files are 3 MB)."""
    crds: list[dict[str, Any]] = []
    for path in crd_files(operator):
        crds.extend(doc for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader) if doc)
    return tuple(crds)


def crd_schema(operator: str, kind: str, version: str = "v1") -> dict[str, Any]:
    """The openAPIV3Schema of ``kind`` at ``version`` in the pinned CRDs (for validating rendered CRs)."""
    for crd in load_crds(operator):
        if crd["spec"]["names"]["kind"] == kind:
            for served in crd["spec"]["versions"]:
                if served["name"] == version:
                    schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
                    return schema
    raise KeyError(f"no CRD for {kind} {version} among the {operator} CRDs")
