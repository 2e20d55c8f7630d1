"""Built-in features: hand-checked values, and proof that a value at t depends on bars up to t only."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.features import FEATURE_COLUMNS, compute_features

pytestmark = pytest.mark.unit


def _bars(closes: list[float], symbol: str = "AAA") -> pd.DataFrame:
    n = len(closes)
    close = np.asarray(closes, dtype=np.float64)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="1D", tz="UTC").as_unit("ns"),
            "symbol": symbol,
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": 1.0,
        }
    )


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    # Three symbols with different lengths and start times, interleaved the way a feed delivers them.
    frames = [
        generate_market_data(["AAA"], start="2024-01-01", periods=400, freq="1h", seed=1, include_regime=True),
        generate_market_data(["BBB"], start="2024-01-03", periods=330, freq="1h", seed=2, include_regime=True),
        generate_market_data(["CCC"], start="2024-01-02 05:00", periods=370, freq="1h", seed=3, include_regime=True),
    ]
    return pd.concat(frames).sort_values(["timestamp", "symbol"]).reset_index(drop=True)


def test_output_shape_order_and_columns(market: pd.DataFrame) -> None:
    features = compute_features(market)
    assert list(features.columns) == ["timestamp", "symbol", *FEATURE_COLUMNS]
    assert len(features) == len(market)
    expected_order = market.sort_values(["symbol", "timestamp"])[["timestamp", "symbol"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(features[["timestamp", "symbol"]], expected_order)
    assert all(features[c].dtype == np.float64 for c in FEATURE_COLUMNS)
    # After the warm-up every feature is defined.
    warm = features.groupby("symbol").tail(200)
    assert not warm[list(FEATURE_COLUMNS)].isna().any().any()


def test_features_at_t_from_bars_up_to_t_equal_those_from_the_full_history(market: pd.DataFrame) -> None:
    full = compute_features(market)
    cut_points = market["timestamp"].drop_duplicates().sort_values().iloc[5::9]
    assert len(cut_points) > 40
    for t in cut_points:
        truncated = compute_features(market[market["timestamp"] <= t])
        expected = full[full["timestamp"] <= t].reset_index(drop=True)
        # Exactly equal, not approximately: same arithmetic on the same prefix.
        pd.testing.assert_frame_equal(truncated, expected, check_exact=True)


def test_perturbing_future_bars_never_changes_past_features(market: pd.DataFrame) -> None:
    full = compute_features(market)
    rng = np.random.default_rng(0)
    for t in market["timestamp"].drop_duplicates().sort_values().iloc[[30, 120, 250]]:
        future = market["timestamp"] > t
        perturbed = market.copy()
        perturbed.loc[future, "close"] *= rng.uniform(0.5, 2.0, size=int(future.sum()))
        changed = compute_features(perturbed)
        past = full["timestamp"] <= t
        pd.testing.assert_frame_equal(changed[past], full[past], check_exact=True)
        # The perturbation is real: features after t did change.
        assert not np.allclose(changed.loc[~past, "rsi"].fillna(0), full.loc[~past, "rsi"].fillna(0))


def test_other_symbols_never_change_a_symbols_features(market: pd.DataFrame) -> None:
    full = compute_features(market)
    alone = compute_features(market[market["symbol"] == "BBB"])
    pd.testing.assert_frame_equal(alone, full[full["symbol"] == "BBB"].reset_index(drop=True), check_exact=True)


def test_rsi_matches_wilders_hand_computation() -> None:
    # Changes +1, -0.5, +1, -0.5, +1 with n=3: first averages 2/3 and 1/6 (RSI 80), then Wilder smoothing.
    features = compute_features(_bars([10.0, 11.0, 10.5, 11.5, 11.0, 12.0]), rsi_window=3)
    rsi = features["rsi"].to_numpy()
    assert np.isnan(rsi[:3]).all()
    np.testing.assert_allclose(rsi[3:], [80.0, 100.0 - 100.0 / 2.6, 100.0 - 100.0 / 4.4], rtol=1e-12)


def test_rsi_is_100_on_a_rising_series_and_50_on_a_flat_one() -> None:
    rising = compute_features(_bars([float(x) for x in range(1, 31)]))["rsi"].dropna()
    flat = compute_features(_bars([5.0] * 30))["rsi"].dropna()
    assert (rising == 100.0).all()
    assert (flat == 50.0).all()
    assert len(rising) == len(flat) == 30 - 14


def test_rsi_matches_a_plain_loop_implementation_on_a_long_series() -> None:
    closes = generate_market_data(["AAA"], periods=300, seed=9)["close"].tolist()
    n = 14
    changes = np.diff(closes)
    gain, loss = np.clip(changes, 0, None), np.clip(-changes, 0, None)
    avg_gain, avg_loss = gain[:n].mean(), loss[:n].mean()
    expected = [100 - 100 / (1 + avg_gain / avg_loss)]
    for g, lo in zip(gain[n:], loss[n:], strict=True):
        avg_gain = (avg_gain * (n - 1) + g) / n
        avg_loss = (avg_loss * (n - 1) + lo) / n
        expected.append(100 - 100 / (1 + avg_gain / avg_loss))
    got = compute_features(_bars(closes))["rsi"].to_numpy()[n:]
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_macd_matches_hand_computed_emas() -> None:
    # fast span 2 (alpha 2/3), slow span 3 (alpha 1/2), signal span 2 on closes 1,2,3,4:
    # EMA fast 1, 5/3, 23/9, 95/27; EMA slow 1, 3/2, 9/4, 25/8 -> MACD 11/36 (bar 2), 85/216 (bar 3);
    # signal starts at 11/36 and moves 2/3 of the way to 85/216 -> 59/162.
    features = compute_features(_bars([1.0, 2.0, 3.0, 4.0]), macd_fast=2, macd_slow=3, macd_signal=2)
    macd, signal, hist = (features[c].to_numpy() for c in ("macd", "macd_signal", "macd_hist"))
    assert np.isnan(macd[:2]).all()
    np.testing.assert_allclose(macd[2:], [11 / 36, 85 / 216], rtol=1e-12)
    assert np.isnan(signal[:3]).all()
    np.testing.assert_allclose(signal[3], 59 / 162, rtol=1e-12)
    np.testing.assert_allclose(hist[3], 85 / 216 - 59 / 162, rtol=1e-12)


def test_bollinger_bands_match_hand_computation() -> None:
    # Window 3 on 1,2,3: mean 2, population std sqrt(2/3); k=2.
    features = compute_features(_bars([1.0, 2.0, 3.0]), bb_window=3, bb_k=2.0)
    std = math.sqrt(2.0 / 3.0)
    upper, lower = 2.0 + 2.0 * std, 2.0 - 2.0 * std
    last = features.iloc[-1]
    assert last["bb_upper"] == pytest.approx(upper, rel=1e-12)
    assert last["bb_lower"] == pytest.approx(lower, rel=1e-12)
    assert last["bb_pctb"] == pytest.approx((3.0 - lower) / (upper - lower), rel=1e-12)
    assert last["bb_bandwidth"] == pytest.approx((upper - lower) / 2.0, rel=1e-12)
    assert features["bb_upper"].iloc[:2].isna().all()


def test_returns_volatility_and_zscore_by_hand() -> None:
    closes = [100.0, 110.0, 99.0, 108.9]
    features = compute_features(_bars(closes), vol_window=3, zscore_window=3, bars_per_year=252.0)
    np.testing.assert_allclose(features["return_1"].iloc[1:], [0.1, -0.1, 0.1], rtol=1e-12)
    logs = np.log(np.asarray(closes))
    np.testing.assert_allclose(features["log_return_1"].iloc[1:], np.diff(logs), rtol=1e-12)
    assert features["volatility"].iloc[3] == pytest.approx(np.std(np.diff(logs), ddof=1) * math.sqrt(252), rel=1e-12)
    window = np.asarray(closes[1:])
    assert features["zscore"].iloc[3] == pytest.approx((108.9 - window.mean()) / window.std(ddof=1), rel=1e-12)


def test_regime_label_finds_the_synthetic_volatile_regime() -> None:
    bars = generate_market_data(["AAA", "BBB"], periods=5000, freq="1h", seed=4, include_regime=True)
    features = compute_features(bars, bars_per_year=365 * 24)
    merged = features.merge(bars[["timestamp", "symbol", "regime"]], on=["timestamp", "symbol"]).dropna()
    assert set(np.unique(merged["regime_x"])) <= {-1.0, 0.0, 1.0, 2.0}
    flagged = merged["regime_x"] == 2.0
    truly_volatile = merged["regime_y"] == "volatile"
    assert flagged[truly_volatile].mean() > 3 * flagged[~truly_volatile].mean()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vol_window": 1}, "vol_window must be an integer >= 2"),
        ({"rsi_window": 2.5}, "rsi_window must be an integer"),
        ({"macd_fast": 26, "macd_slow": 12}, "macd_fast .* must be smaller than macd_slow"),
        ({"bb_k": 0.0}, "bb_k must be a positive"),
        ({"bars_per_year": -1.0}, "bars_per_year must be positive"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_features(_bars([1.0, 2.0, 3.0]), **kwargs)  # type: ignore[arg-type]


def test_bad_input_frames_are_refused() -> None:
    bars = _bars([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="lack column"):
        compute_features(bars.drop(columns=["close"]))
    with pytest.raises(ValueError, match="duplicate"):
        compute_features(pd.concat([bars, bars.iloc[[1]]]))
    with pytest.raises(ValueError, match=r"pd\.to_datetime"):
        compute_features(bars.assign(timestamp=bars["timestamp"].astype(str)))
