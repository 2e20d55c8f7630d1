"""Numba indicator kernels against pandas, and their chunk-by-chunk form against the whole-series form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from qframe.research.backtesting import kernels

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def prices() -> np.ndarray:
    # A high price level over many bars: a running cumsum would lose digits here, the anchored sums must not.
    rng = np.random.default_rng(4)
    return 25_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 200_000)))


@pytest.mark.parametrize("window", [1, 2, 3, 7, 50, 333])
def test_rolling_mean_std_match_exact_windows(prices: np.ndarray, window: int) -> None:
    mean, std = kernels.rolling_mean_std(prices, window)
    np.testing.assert_allclose(mean, pd.Series(prices).rolling(window).mean().to_numpy(), rtol=1e-12, equal_nan=True)
    assert np.isnan(mean[: window - 1]).all()
    assert np.isnan(std[: window - 1]).all()
    assert mean[-1] == pytest.approx(np.mean(prices[-window:]), rel=1e-13)
    if window == 1:
        assert np.isnan(std).all()
        return
    # Exact two-pass std of every window (pandas' online variance is itself off by ~1e-7 at this level).
    head = prices[:30_000]
    exact = np.std(sliding_window_view(head, window), axis=1, ddof=1)
    np.testing.assert_allclose(std[window - 1 : 30_000], exact, rtol=1e-9)


@pytest.mark.parametrize("window", [1, 3, 64, 1000])
def test_a_span_equals_the_whole_series_bit_for_bit(prices: np.ndarray, window: int) -> None:
    x = prices[:20_000]
    mean, std = kernels.rolling_mean_std(x, window)
    for t0, t1 in [(0, 5), (0, 20_000), (17, 2_049), (window - 1, window + 3), (12_345, 20_000), (19_999, 20_000)]:
        span_mean = np.empty(t1 - t0)
        span_std = np.empty(t1 - t0)
        kernels.rolling_moments_span(x, window, t0, t1, span_mean, span_std, True)
        np.testing.assert_array_equal(span_mean, mean[t0:t1])
        np.testing.assert_array_equal(span_std, std[t0:t1])


@pytest.mark.parametrize("window", [1, 2, 20, 257])
def test_rolling_extremes_match_pandas(prices: np.ndarray, window: int) -> None:
    x = prices[:50_000]
    series = pd.Series(x).rolling(window)
    np.testing.assert_array_equal(kernels.rolling_extreme(x, window, True), series.max().to_numpy())
    np.testing.assert_array_equal(kernels.rolling_extreme(x, window, False), series.min().to_numpy())


def test_bar_returns() -> None:
    close = np.array([10.0, 11.0, 9.9, 9.9])
    np.testing.assert_allclose(kernels.bar_returns(close), [0.0, 0.1, -0.1, 0.0], atol=1e-15)


def test_accumulators_of_a_known_path() -> None:
    """Hand-computed: long, long, short, flat on returns +10%, -10%, +10%, +0% with 1% costs."""
    close = np.array([100.0, 110.0, 99.0, 108.9, 108.9])
    targets = np.array([[1.0], [1.0], [-1.0], [0.0], [0.0]])
    acc = kernels.simulate_targets(targets, kernels.bar_returns(close), 0, 5, 0.01, 1_000.0)[0]
    rets = [0.0, 0.1 - 0.01, -0.1, -0.1 - 0.02, 0.0 - 0.01]
    equity = 1_000.0 * np.cumprod(1.0 + np.array(rets))
    assert acc[kernels.ACC_FINAL_EQUITY] == pytest.approx(equity[-1], rel=1e-12)
    assert acc[kernels.ACC_SUM] == pytest.approx(sum(rets), rel=1e-12)
    assert acc[kernels.ACC_SUMSQ] == pytest.approx(sum(r * r for r in rets), rel=1e-12)
    assert acc[kernels.ACC_DOWNSIDE_SUMSQ] == pytest.approx(sum(r * r for r in rets if r < 0), rel=1e-12)
    assert acc[kernels.ACC_TRADES] == 3
    assert acc[kernels.ACC_EXPOSED_BARS] == 3
    peak = np.maximum.accumulate(np.concatenate([[1_000.0], equity]))[1:]
    assert acc[kernels.ACC_MAX_DRAWDOWN] == pytest.approx(float(np.min(equity / peak - 1.0)), rel=1e-12)


@pytest.mark.parametrize("window", [1, 5, 300])
def test_extreme_spans_equal_the_whole_series(prices: np.ndarray, window: int) -> None:
    x = prices[:10_000]
    for take_max in (True, False):
        whole = kernels.rolling_extreme(x, window, take_max)
        for t0, t1 in [(0, 3), (2, 2_049), (window - 1, window + 1), (4_000, 10_000)]:
            span = np.empty(t1 - t0)
            kernels.rolling_extreme_span(x, window, take_max, t0, t1, span)
            np.testing.assert_array_equal(span, whole[t0:t1])
