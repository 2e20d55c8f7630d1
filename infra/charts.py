"""Where the program finds the repository's own Helm charts.

Charts are installed from the local path (air-gapped by design: no chart repository at deploy
time). The path is made relative to the working directory so the Release inputs, and with them the
stack state, do not change when the repository is cloned somewhere else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.config import PROJECT

CHARTS_DIR = Path(__file__).resolve().parents[1] / "charts"


def chart_path(name: str) -> str:
    path = CHARTS_DIR / name
    if not (path / "Chart.yaml").is_file():
        raise FileNotFoundError(f"chart {name!r} not found at {path}; expected charts/{name}/Chart.yaml")
    return os.path.relpath(path)


def local_chart_release(
    resource_name: str,
    *,
    chart: str,
    release: str,
    namespace: pulumi.Input[str],
    values: pulumi.Input[dict[str, Any]],
    description: str,
    opts: pulumi.ResourceOptions,
) -> k8s.helm.v3.Release:
    """A helm release of one of our charts from its local path, with the settings every component shares.

    The release name is fixed (no random suffix) so object names never change between releases;
    a failed upgrade cleans up after itself and only a short history is kept.
    """
    return k8s.helm.v3.Release(
        resource_name,
        k8s.helm.v3.ReleaseArgs(
            name=release,
            chart=chart_path(chart),
            namespace=namespace,
            values=values,
            cleanup_on_fail=True,
            max_history=5,
            description=f"{PROJECT} {description}",
        ),
        opts=opts,
    )
