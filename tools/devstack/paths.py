"""Where the dev tooling finds the pinned tools and keeps its per-clone state."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tools.paths import REPO_ROOT, TOOLS_BIN


class MissingToolError(RuntimeError):
    """A pinned tool is not installed; the message says which tools/install step provides it."""


# Which `tools/install` step provides each binary, for the error message.
TOOL_STEPS = {
    "pulumi": "pulumi",
    "pulumi-language-python": "pulumi",
    "pulumi-resource-kubernetes": "pulumi-kubernetes",
    "kube-apiserver": "kube",
    "kube-controller-manager": "kube",
    "kube-scheduler": "kube",
    "kubectl": "kube",
    "etcd": "etcd",
    "kwok": "kwok",
    "kwokctl": "kwok",
    "helm": "helm",
    "kuberay-operator": "kuberay",
    "oci-registry": "oci-registry",
}


def require_tools(*names: str, bin_dir: Path = TOOLS_BIN) -> dict[str, Path]:
    """All of ``names`` at once, or one error listing every missing tool and the install command."""
    missing = [n for n in names if not os.access(bin_dir / n, os.X_OK)]
    if missing:
        steps = sorted({TOOL_STEPS.get(n, n) for n in missing})
        raise MissingToolError(
            f"missing pinned tools: {', '.join(missing)}; run: tools/install {' '.join(steps)} "
            "(cold builds take minutes; they are cached in ~/.cache/qframe-tools)"
        )
    return {n: bin_dir / n for n in names}


@dataclass(frozen=True)
class StateDirs:
    """Per-clone state: the local cluster, the Pulumi file backend and its passphrase.

    Kept in the clone (``.state/``, gitignored) so two clones never share a stack by accident.
    """

    root: Path

    @classmethod
    def default(cls) -> StateDirs:
        return cls(Path(os.environ.get("QFRAME_STATE_DIR", REPO_ROOT / ".state")))

    @property
    def kwok_home(self) -> Path:
        return self.root / "kwok"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pulumi_backend(self) -> Path:
        return self.root / "pulumi"

    @property
    def passphrase_file(self) -> Path:
        return self.root / "pulumi-passphrase"

    def wipe(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
