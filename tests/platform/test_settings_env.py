"""ResearchSettings: QFRAME_* variables win over laptop defaults, bad values are named with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from qframe.research.settings import ResearchSettings, SettingsError

pytestmark = pytest.mark.unit


def test_laptop_defaults_live_under_the_workdir(tmp_path: Path) -> None:
    settings = ResearchSettings.from_env({}, workdir=tmp_path)
    assert settings.resolved_lake_url == (tmp_path / "lake").as_uri()
    assert settings.resolved_catalog_url == f"sqlite:///{tmp_path / 'catalog.db'}"
    assert settings.resolved_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert settings.compute_backend == "auto"


def test_environment_variables_are_read_and_overrides_win() -> None:
    env = {
        "QFRAME_LAKE_URL": "s3://lake/research",
        "QFRAME_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "QFRAME_COMPUTE_BACKEND": "ray",
        "QFRAME_RAY_ADDRESS": "ray://127.0.0.1:10001",
        "QFRAME_DASK_ADDRESS": "tcp://127.0.0.1:8786",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
    }
    settings = ResearchSettings.from_env(env)
    assert settings.resolved_lake_url == "s3://lake/research"
    assert settings.resolved_tracking_uri == "http://127.0.0.1:5000"
    assert settings.compute_address == "ray://127.0.0.1:10001"
    assert ResearchSettings.from_env(env, compute_backend="dask").compute_address == "tcp://127.0.0.1:8786"


def test_a_bad_backend_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="QFRAME_COMPUTE_BACKEND") as info:
        ResearchSettings.from_env({"QFRAME_COMPUTE_BACKEND": "spark"})
    assert "Fix the variable" in str(info.value)


def test_unknown_override_is_refused() -> None:
    with pytest.raises(SettingsError, match="QFRAME_LAKE"):
        ResearchSettings.from_env({}, lake="s3://x")
