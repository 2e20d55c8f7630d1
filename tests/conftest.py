"""Shared test setup: the pinned tools in .tools/bin come first on PATH for every tier."""

from __future__ import annotations

import os

from tools.paths import TOOLS_BIN

os.environ["PATH"] = f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}"

# Real-service fixtures (postgres, kafka, s3, minio, mlflow_server) for every test directory.
pytest_plugins = ["tests.harness.fixtures"]
