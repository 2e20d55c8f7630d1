"""Bootstrap confidence intervals: exact small cases, reproducibility, coverage of the point estimate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from qframe.research.backtesting import monte_carlo
from qframe.research.backtesting.analytics import AdvancedPerformanceAnalyzer
from qframe.research.backtesting.monte_carlo import bootstrap_confidence_intervals, bootstrap_statistics, level_label

pytestmark = pytest.mark.unit


def normal_returns(n: int = 750, seed: int = 11) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0008, 0.01, n)


def test_two_bar_series_interval_bounds_are_the_extreme_paths() -> None:
    # Resampling [a, b] twice: paths aa (1/4), ab/ba (1/2), bb (1/4). Both 95% and 75% tails (2.5%, 12.5%)
    # fall inside the 1/4 mass at each end, so the bounds are exactly (1+a)^2-1 and (1+b)^2-1.
    a, b = -0.02, 0.03
    ci = bootstrap_confidence_intervals([a, b], n_simulations=4000, seed=1)
    for label in ("95%", "75%"):
        lo, hi = ci.total_return[label]
        assert lo == pytest.approx((1 + a) ** 2 - 1, abs=1e-12)
        assert hi == pytest.approx((1 + b) ** 2 - 1, abs=1e-12)


def test_resampled_statistics_by_hand_for_each_path() -> None:
    r = np.array([-0.02, 0.03])
    totals, sharpes = bootstrap_statistics(r, n_simulations=500, seed=5, bars_per_year=4)
    allowed_totals = {round(0.98**2 - 1, 12), round(0.98 * 1.03 - 1, 12), round(1.03**2 - 1, 12)}
    assert {round(float(t), 12) for t in totals} == allowed_totals
    # Mixed path: mean 0.005, std (ddof=1) = 0.05/sqrt(2); same-bar paths have no dispersion -> NaN Sharpe.
    mixed = np.isclose(totals, 0.98 * 1.03 - 1)
    np.testing.assert_allclose(sharpes[mixed], 0.005 / (0.05 / math.sqrt(2)) * 2.0, rtol=1e-12)
    assert np.isnan(sharpes[~mixed]).all()


def test_same_seed_identical_different_seed_close() -> None:
    r = normal_returns()
    first = bootstrap_confidence_intervals(r, n_simulations=3000, seed=42)
    again = bootstrap_confidence_intervals(r, n_simulations=3000, seed=42)
    other = bootstrap_confidence_intervals(r, n_simulations=3000, seed=43)
    assert first == again
    assert first.total_return != other.total_return
    for label in ("95%", "75%"):
        for i in range(2):
            assert other.total_return[label][i] == pytest.approx(first.total_return[label][i], rel=0.05)
            assert other.sharpe_ratio[label][i] == pytest.approx(first.sharpe_ratio[label][i], abs=0.15)


def test_intervals_contain_the_point_estimate_and_nest() -> None:
    r = normal_returns()
    analysis = AdvancedPerformanceAnalyzer(n_simulations=2000, seed=3).analyze_comprehensive(pd.Series(r))
    ci = analysis["confidence_intervals"]
    assert ci["n_simulations"] == 2000
    assert ci["seed"] == 3
    for stat in ("total_return", "sharpe_ratio"):
        point = analysis["basic_metrics"][stat]
        lo95, hi95 = ci[stat]["95%"]
        lo75, hi75 = ci[stat]["75%"]
        assert lo95 < lo75 < point < hi75 < hi95, stat


def test_sharpe_interval_width_matches_the_textbook_standard_error() -> None:
    # For i.i.d. normal returns the Sharpe estimate has std error ~ sqrt((1 + SR^2/2) / n) per bar.
    r = normal_returns(n=2000, seed=21)
    bpy = 252.0
    ci = bootstrap_confidence_intervals(r, n_simulations=4000, seed=0, bars_per_year=bpy)
    sr_bar = r.mean() / r.std(ddof=1)
    se_annual = math.sqrt((1 + sr_bar**2 / 2) / r.size) * math.sqrt(bpy)
    lo, hi = ci.sharpe_ratio["95%"]
    assert (hi - lo) == pytest.approx(2 * 1.96 * se_annual, rel=0.1)


def test_block_bootstrap_reproducible_and_wider_for_trending_autocorrelated_returns() -> None:
    rng = np.random.default_rng(9)
    # AR(1) with strong positive autocorrelation: blocks keep the runs, so total-return dispersion is larger.
    eps = rng.normal(0, 0.005, 3000)
    r = np.empty_like(eps)
    r[0] = eps[0]
    for t in range(1, r.size):
        r[t] = 0.8 * r[t - 1] + eps[t]
    iid = bootstrap_confidence_intervals(r, n_simulations=1500, seed=1)
    block = bootstrap_confidence_intervals(r, n_simulations=1500, seed=1, block_size=50)
    assert block == bootstrap_confidence_intervals(r, n_simulations=1500, seed=1, block_size=50)
    assert block.method.startswith("circular block")
    iid_width = iid.total_return["95%"][1] - iid.total_return["95%"][0]
    block_width = block.total_return["95%"][1] - block.total_return["95%"][0]
    assert block_width > 1.8 * iid_width


def test_chunking_does_not_change_the_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    r = normal_returns(n=500)
    whole = bootstrap_statistics(r, n_simulations=64, seed=8, block_size=7)
    monkeypatch.setattr(monte_carlo, "_MAX_CHUNK_ELEMENTS", 500 * 5)  # 5 simulations per chunk
    chunked = bootstrap_statistics(r, n_simulations=64, seed=8, block_size=7)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])


def test_bad_inputs_rejected_with_the_fix() -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        bootstrap_confidence_intervals([0.1, math.nan])
    with pytest.raises(ValueError, match="n_simulations"):
        bootstrap_confidence_intervals([0.1], n_simulations=0)
    with pytest.raises(ValueError, match="outside"):
        bootstrap_confidence_intervals([0.1], confidence_levels=(95,))
    with pytest.raises(ValueError, match="block_size"):
        bootstrap_confidence_intervals([0.1], block_size=0)
    with pytest.raises(ValueError, match="one-dimensional"):
        bootstrap_confidence_intervals(np.zeros((2, 2)))


def test_level_labels() -> None:
    assert level_label(0.95) == "95%"
    assert level_label(0.75) == "75%"
    assert level_label(0.975) == "97.5%"
