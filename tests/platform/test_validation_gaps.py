"""Validation reports gaps against the inferred bar frequency (count, largest, where), calendar-aware, and says
how timestamps without a zone were read, so `qframe data validate` tells what ingesting the file would store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import structlog
from qframe.research.cli import app
from qframe.research.data_lake.ingestion import normalise_bars
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.data_lake.validation import validate_market_data
from typer.testing import CliRunner

pytestmark = pytest.mark.unit


def _outage(bars: pd.DataFrame, symbol: str, start: str, end: str) -> pd.DataFrame:
    cut = (bars["symbol"] == symbol) & (bars["timestamp"] >= start) & (bars["timestamp"] < end)
    return bars[~cut].reset_index(drop=True)


def test_a_six_hour_outage_in_24_7_bars_is_reported_with_where_and_how_long() -> None:
    bars = generate_market_data(["AAA", "BBB"], periods=500, freq="1h", seed=1)
    report = validate_market_data(_outage(bars, "AAA", "2024-01-05 10:00Z", "2024-01-05 16:00Z"))
    assert report.ok  # an outage is a warning, not a broken row
    (gap,) = report.gaps
    assert (gap.symbol, gap.count, gap.missing_bars) == ("AAA", 1, 6)
    assert gap.largest == pd.Timedelta(hours=7)
    assert gap.largest_after == pd.Timestamp("2024-01-05 09:00Z")
    assert "1h bars, 24/7 calendar" in gap.frequency
    summary = report.summary()
    assert "warning: 1 gap(s)" in summary
    assert "AAA: 1 gap(s), ~6 missing bar(s), largest 07:00:00 after 2024-01-05 09:00:00+00:00" in summary
    assert validate_market_data(bars).gaps == ()


def test_nights_weekends_and_lone_holidays_of_an_exchange_are_not_gaps() -> None:
    stamps = pd.date_range("2024-01-01 14:30", periods=24 * 60, freq="1h", tz="UTC")
    session = stamps[(stamps.day_of_week < 5) & (stamps.hour >= 14) & (stamps.hour <= 20)]
    bars = generate_market_data(["XYZ"], periods=len(stamps), freq="1h", seed=4).iloc[: len(session)].copy()
    bars["timestamp"] = session
    assert validate_market_data(bars).gaps == ()
    hole = bars[~bars["timestamp"].isin(session[10:13])].reset_index(drop=True)  # 3 bars inside one session
    (gap,) = validate_market_data(hole).gaps
    assert (gap.count, gap.missing_bars) == (1, 3)
    assert "exchange sessions" in gap.frequency

    days = pd.bdate_range("2023-01-02", periods=260, tz="UTC")
    daily = generate_market_data(["D"], periods=len(days), freq="1D", seed=2)
    daily["timestamp"] = days
    holiday = daily.drop(index=[40]).reset_index(drop=True)  # a lone weekday off
    assert validate_market_data(holiday).gaps == ()
    week_off = daily.drop(index=range(100, 104)).reset_index(drop=True)
    (gap,) = validate_market_data(week_off).gaps
    assert (gap.count, gap.missing_bars) == (1, 4)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for key in ("QFRAME_LAKE_URL", "QFRAME_CATALOG_URL", "QFRAME_WORKDIR"):
        monkeypatch.delenv(key, raising=False)
    yield CliRunner()
    structlog.reset_defaults()


def test_validate_says_how_zone_less_timestamps_were_read_and_where_the_gaps_are(
    runner: CliRunner, tmp_path: Path
) -> None:
    bars = _outage(
        generate_market_data(["AAA"], periods=300, freq="1h", seed=1), "AAA", "2024-01-03 00:00Z", "2024-01-03 06:00Z"
    )
    naive = bars.assign(timestamp=bars["timestamp"].dt.tz_localize(None))
    path = tmp_path / "bars.csv"
    naive.to_csv(path, index=False)
    result = runner.invoke(app, ["-q", "data", "validate", str(path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "valid (294 bars)" in text
    assert "timestamps without a time zone were read as UTC" in text
    assert "AAA: 1 gap(s), ~6 missing bar(s), largest 07:00:00 after 2024-01-02 23:00:00+00:00" in text
    # The same reading as ingestion: the frame validate checked is the frame the lake would store.
    stored = normalise_bars(pd.read_csv(path))
    assert stored["timestamp"].equals(bars["timestamp"].dt.as_unit("ns"))
    # A frame handed to the lake with zone-less timestamps is refused with the fix, as the lake's writer does.
    report = validate_market_data(naive)
    assert not report.ok
    assert any("tz_localize('UTC')" in error for error in report.schema_errors)
