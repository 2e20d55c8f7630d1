"""Where the program finds the repository's own Helm charts.

Charts are installed from the local path (air-gapped by design: no chart repository at deploy
time). The path is made relative to the working directory so the Release inputs, and with them the
stack state, do not change when the repository is cloned somewhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

CHARTS_DIR = Path(__file__).resolve().parents[1] / "charts"


def chart_path(name: str) -> str:
    path = CHARTS_DIR / name
    if not (path / "Chart.yaml").is_file():
        raise FileNotFoundError(f"chart {name!r} not found at {path}; expected charts/{name}/Chart.yaml")
    return os.path.relpath(path)
