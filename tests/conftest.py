"""Shared test setup: the pinned tools in .tools/bin come first on PATH for every tier."""

from __future__ import annotations

import os
from pathlib import Path

TOOLS_BIN = Path(__file__).resolve().parents[1] / ".tools" / "bin"
os.environ["PATH"] = f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}"

# Real-service fixtures (postgres, kafka, s3, minio, mlflow_server) for every test directory.
pytest_plugins = ["tests.harness.fixtures"]
