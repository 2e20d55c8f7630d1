"""Synthetic bars: deterministic, valid by construction, and with regimes a strategy can tell apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from qframe.research.data_lake.synthetic import REGIMES, generate_market_data
from qframe.research.data_lake.validation import validate_market_data

pytestmark = pytest.mark.unit


def _frame_bytes(df: pd.DataFrame) -> bytes:
    parts = [df[c].to_numpy().tobytes() for c in ("open", "high", "low", "close", "volume")]
    parts.append(df["timestamp"].array.asi8.tobytes())
    parts.append("|".join(df["symbol"]).encode())
    return b"".join(parts)


def test_same_seed_gives_a_byte_identical_frame() -> None:
    first = generate_market_data(["AAA", "BBB"], periods=500, seed=11)
    second = generate_market_data(["AAA", "BBB"], periods=500, seed=11)
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    assert _frame_bytes(first) == _frame_bytes(second)


def test_another_seed_gives_other_prices() -> None:
    first = generate_market_data(["AAA"], periods=200, seed=1)
    second = generate_market_data(["AAA"], periods=200, seed=2)
    assert not np.allclose(first["close"], second["close"])


def test_a_symbols_series_does_not_depend_on_the_other_symbols_requested() -> None:
    alone = generate_market_data(["BBB"], periods=300, seed=5)
    with_others = generate_market_data(["AAA", "BBB", "CCC"], periods=300, seed=5)
    pd.testing.assert_frame_equal(
        alone.reset_index(drop=True),
        with_others[with_others["symbol"] == "BBB"].reset_index(drop=True),
        check_exact=True,
    )


@pytest.mark.parametrize(("freq", "periods"), [("1min", 2000), ("1h", 1500), ("1D", 800), ("B", 300), ("1h", 1)])
def test_bars_are_valid_sorted_and_typed_at_any_frequency(freq: str, periods: int) -> None:
    df = generate_market_data(["X", "Y", "Z"], start="2024-03-01", periods=periods, freq=freq, seed=3)
    assert validate_market_data(df).ok
    assert len(df) == 3 * periods
    assert list(df.columns) == ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert all(df[c].dtype == np.float64 for c in ("open", "high", "low", "close", "volume"))
    assert df["symbol"].tolist() == ["X"] * periods + ["Y"] * periods + ["Z"] * periods
    assert df.groupby("symbol")["timestamp"].is_monotonic_increasing.all()
    assert df["timestamp"].iloc[0] == pd.Timestamp("2024-03-01", tz="UTC")
    expected = pd.date_range("2024-03-01", periods=periods, freq=freq, tz="UTC")
    assert (df["timestamp"].iloc[:periods].to_numpy() == expected.as_unit("ns").to_numpy()).all()


def test_start_in_another_zone_is_converted_to_utc() -> None:
    df = generate_market_data(["X"], start=pd.Timestamp("2024-01-02 09:30", tz="America/New_York"), periods=3)
    assert df["timestamp"].iloc[0] == pd.Timestamp("2024-01-02 14:30", tz="UTC")


def test_regimes_have_the_statistical_character_their_names_promise() -> None:
    df = generate_market_data(["AAA", "BBB", "CCC", "DDD"], periods=20_000, freq="1h", seed=0, include_regime=True)
    assert set(df["regime"]) == set(REGIMES)
    df = df.assign(ret=np.log(df["close"]).groupby(df["symbol"]).diff())
    df = df.assign(prev_ret=df.groupby("symbol")["ret"].shift(), prev_regime=df.groupby("symbol")["regime"].shift())
    steady = df[df["regime"] == df["prev_regime"]].dropna(subset=["ret", "prev_ret"])
    stats: dict[str, dict[str, float]] = {}
    for regime, rows in steady.groupby("regime"):
        stats[regime] = {
            "std": rows["ret"].std(),
            "autocorr": np.corrcoef(rows["ret"], rows["prev_ret"])[0, 1],
        }
    assert stats["volatile"]["std"] > 2.0 * stats["trend"]["std"]
    assert stats["mean_revert"]["autocorr"] < -0.3
    assert abs(stats["trend"]["autocorr"]) < 0.1
    # Trends drift: the mean return of each trend segment has a consistent sign and a visible size.
    segment = (df["regime"] != df["prev_regime"]).groupby(df["symbol"]).cumsum()
    trend_rows = df[df["regime"] == "trend"].dropna(subset=["ret"])
    per_segment = trend_rows.groupby([trend_rows["symbol"], segment[trend_rows.index]])["ret"].agg(
        ["mean", "std", "size"]
    )
    per_segment = per_segment[per_segment["size"] >= 100]
    t_stats = per_segment["mean"] / (per_segment["std"] / np.sqrt(per_segment["size"]))
    assert len(t_stats) >= 10
    assert t_stats.abs().median() > 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"symbols": []}, "symbols is empty"),
        ({"symbols": "AAA"}, "not one string"),
        ({"symbols": ["A", "A"]}, "duplicates"),
        ({"symbols": ["A", ""]}, "non-empty strings"),
        ({"symbols": ["A"], "periods": 0}, "periods must be a positive integer"),
        ({"symbols": ["A"], "seed": -1}, "seed must be a non-negative integer"),
        ({"symbols": ["A"], "freq": "fortnightly"}, "not a pandas frequency"),
        ({"symbols": ["A"], "start": "not a date"}, "is not a timestamp"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        generate_market_data(**kwargs)  # type: ignore[arg-type]
