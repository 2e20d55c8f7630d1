"""Where this clone keeps the pinned tools (``.tools``, filled by tools/install) and its venv.

The dev stack commands and the local service processes both look here, so the layout is written
down once.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLS_DIR = REPO_ROOT / ".tools"
TOOLS_BIN = TOOLS_DIR / "bin"
VENV_BIN = REPO_ROOT / ".venv" / "bin"
