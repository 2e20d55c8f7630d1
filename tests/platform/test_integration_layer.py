"""create_research_integration: one session object over lake, catalog and feature store, with a status report."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest
from qframe.research.backtesting.strategies import available_strategies
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.features import compute_features
from qframe.research.integration_layer import (
    IntegrationError,
    compute_research_features,
    create_research_integration,
    get_integration_status,
)
from qframe.research.settings import ResearchSettings

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(tmp_path: Path) -> ResearchSettings:
    return ResearchSettings.from_env({}, workdir=tmp_path / "w")


def test_status_reports_where_things_are_and_what_is_available(settings: ResearchSettings) -> None:
    with create_research_integration(settings=settings) as session:
        status = get_integration_status(session)
        assert status["data_lake_backend"] == "local"
        assert status["data_lake_url"] == settings.resolved_lake_url
        assert status["feature_store_ready"] is True
        assert status["strategies"] == available_strategies()
        assert status["strategies_discovered"] == len(available_strategies()) >= 3
        assert status["compute_backends_installed"] == {"dask": True, "ray": True}
        assert status["qframe_core_available"] is False
    assert session.get_integration_status()["feature_store_ready"] is False


def test_the_session_round_trips_features_through_the_lake(settings: ResearchSettings) -> None:
    bars = generate_market_data(["AAA", "BBB"], periods=200, freq="1h", seed=5)
    with create_research_integration(settings=settings) as session:
        session.feature_store.store_features_sync("technical", compute_features(bars), "v1")
        back = session.feature_store.get_features_sync("technical", symbols=["BBB"])
    assert set(back["symbol"]) == {"BBB"}
    assert len(back) == 200


async def _enhanced(settings: ResearchSettings, bars: pd.DataFrame) -> pd.DataFrame:
    with create_research_integration(settings=settings) as session:
        return await session.compute_research_features(bars, feature_groups=["technical", "regime"])


def test_feature_groups_select_columns_and_keep_the_bars(settings: ResearchSettings) -> None:
    bars = generate_market_data(["AAA"], periods=120, freq="1h", seed=2)
    enhanced = asyncio.run(_enhanced(settings, bars))
    assert list(enhanced.columns[: len(bars.columns)]) == list(bars.columns)
    added = set(enhanced.columns) - set(bars.columns)
    assert {"rsi", "macd", "macd_signal", "bb_upper", "regime"} <= added
    assert not added & {"return_1", "volatility", "zscore"}
    full = compute_features(bars).set_index(["symbol", "timestamp"])
    mine = enhanced.set_index(["symbol", "timestamp"])
    pd.testing.assert_series_equal(mine["rsi"], full["rsi"].reindex(mine.index))


def test_what_cannot_be_done_is_refused_with_the_fix(settings: ResearchSettings) -> None:
    bars = generate_market_data(["AAA"], periods=50, freq="1h", seed=2)
    with pytest.raises(IntegrationError, match="unknown feature group"):
        compute_research_features(bars, feature_groups=["fundamental"])
    with pytest.raises(IntegrationError, match="QFrame Core"):
        compute_research_features(bars, include_symbolic=True)
    with pytest.raises(IntegrationError, match="QFRAME_S3_ENDPOINT_URL"):
        create_research_integration(use_minio=True, settings=settings)


def test_passwords_never_reach_the_status(tmp_path: Path) -> None:
    settings = ResearchSettings.from_env(
        {
            "QFRAME_CATALOG_URL": f"sqlite:///{tmp_path / 'c.db'}",
            "MLFLOW_TRACKING_URI": "http://bob:hunter2@127.0.0.1:5000",
        },
        workdir=tmp_path,
    )
    with create_research_integration(settings=settings) as session:
        status = session.get_integration_status()
    assert status["mlflow_tracking_uri"] == "http://bob:***@127.0.0.1:5000"
    assert "hunter2" not in repr(status)
