"""AdvancedPerformanceAnalyzer: every metric against arithmetic written out by hand on tiny series."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from qframe.research.backtesting.analytics import (
    AdvancedPerformanceAnalyzer,
    drawdown_series,
    max_consecutive_losses,
    returns_from,
)

pytestmark = pytest.mark.unit

# Five bars, bars_per_year=4 so annualisation is easy to write down.
R = [0.1, -0.05, 0.02, -0.03, 0.04]
BPY = 4.0
# Two drawdown episodes, the second one longer and recovered.
R2 = [-0.1, 0.2, -0.05, -0.05, 0.1, 0.01]


def analyzer(**kwargs: object) -> AdvancedPerformanceAnalyzer:
    options: dict[str, object] = {"bars_per_year": BPY, "rolling_window": 3, "n_simulations": 200}
    options.update(kwargs)
    return AdvancedPerformanceAnalyzer(**options)  # type: ignore[arg-type]


def daily(values: list[float]) -> pd.Series:
    return pd.Series(values, index=pd.date_range("2024-01-01", periods=len(values), freq="D", tz="UTC"))


def test_basic_metrics_match_hand_arithmetic() -> None:
    got = analyzer().analyze_comprehensive(daily(R))["basic_metrics"]
    total = 1.1 * 0.95 * 1.02 * 0.97 * 1.04 - 1  # = 0.07527992
    assert got["total_return"] == pytest.approx(0.07527992, abs=1e-12)
    assert got["total_return"] == pytest.approx(total, abs=1e-12)
    annual = 1.07527992 ** (4 / 5) - 1
    assert got["annualized_return"] == pytest.approx(annual, rel=1e-12)
    # mean = 0.08 / 5 = 0.016; deviations 0.084, -0.066, 0.004, -0.046, 0.024
    # squared: 0.007056 + 0.004356 + 0.000016 + 0.002116 + 0.000576 = 0.01412; / (5 - 1) = 0.00353
    var = 0.00353
    assert got["volatility"] == pytest.approx(math.sqrt(var) * 2.0, rel=1e-12)
    assert got["sharpe_ratio"] == pytest.approx(0.016 / math.sqrt(var) * 2.0, rel=1e-12)
    # downside: (0.05^2 + 0.03^2) / 5 = 0.0034 / 5 = 0.00068
    assert got["sortino_ratio"] == pytest.approx(0.016 / math.sqrt(0.00068) * 2.0, rel=1e-12)
    # worst wealth point 1.033923 against peak 1.1
    max_dd = 1.033923 / 1.1 - 1
    assert got["calmar_ratio"] == pytest.approx(annual / abs(max_dd), rel=1e-9)


def test_risk_free_rate_is_compounded_to_a_per_bar_rate() -> None:
    rf_annual = 1.02**4 - 1  # per-bar rf of exactly 2% with 4 bars a year
    got = analyzer(risk_free_rate=rf_annual).analyze_comprehensive(daily(R))["basic_metrics"]
    # excess mean = 0.016 - 0.02 = -0.004; the std of r - rf equals the std of r
    assert got["sharpe_ratio"] == pytest.approx(-0.004 / math.sqrt(0.00353) * 2.0, rel=1e-9)
    # excess: 0.08, -0.07, 0.0, -0.05, 0.02 -> downside (0.0049 + 0.0025) / 5 = 0.00148
    assert got["sortino_ratio"] == pytest.approx(-0.004 / math.sqrt(0.00148) * 2.0, rel=1e-9)


def test_risk_metrics_match_hand_arithmetic() -> None:
    got = analyzer().analyze_comprehensive(daily(R))["risk_metrics"]
    # sorted: -0.05, -0.03, 0.02, 0.04, 0.1; 5% quantile at position 0.05 * 4 = 0.2 -> -0.05 + 0.2 * 0.02
    assert got["var_95"] == pytest.approx(-0.046, abs=1e-15)
    assert got["cvar_95"] == pytest.approx(-0.05, abs=1e-15)  # only -0.05 is at or below -0.046
    d = [0.084, -0.066, 0.004, -0.046, 0.024]
    n = 5
    m2 = sum(x**2 for x in d) / n
    m3 = sum(x**3 for x in d) / n
    m4 = sum(x**4 for x in d) / n
    g1 = m3 / m2**1.5
    skew = g1 * math.sqrt(n * (n - 1)) / (n - 2)
    g2 = m4 / m2**2 - 3
    excess_kurt = ((n + 1) * g2 + 6) * (n - 1) / ((n - 2) * (n - 3))
    assert got["skewness"] == pytest.approx(skew, rel=1e-9)
    assert got["kurtosis"] == pytest.approx(excess_kurt, rel=1e-9)
    assert got["max_consecutive_losses"] == 1
    assert got["win_rate"] == pytest.approx(3 / 5)
    assert got["best_period"] == 0.1
    assert got["worst_period"] == -0.05


def test_kurtosis_is_excess_so_a_large_normal_sample_is_near_zero() -> None:
    r = np.random.default_rng(7).normal(0.0005, 0.01, 200_000)
    got = AdvancedPerformanceAnalyzer(n_simulations=10).analyze_comprehensive(pd.Series(r))["risk_metrics"]
    assert abs(got["kurtosis"]) < 0.05
    assert abs(got["skewness"]) < 0.05


def test_drawdown_analysis_single_unrecovered_episode() -> None:
    got = analyzer().analyze_comprehensive(daily(R))["drawdown_analysis"]
    # wealth 1.1, 1.045, 1.0659, 1.033923, 1.07527992 under a peak of 1.1 from bar 0 on
    assert got["max_drawdown"] == pytest.approx(1.033923 / 1.1 - 1, rel=1e-12)
    assert got["avg_drawdown"] == pytest.approx(1.033923 / 1.1 - 1, rel=1e-12)
    assert got["num_drawdowns"] == 1
    assert got["time_in_drawdown"] == pytest.approx(4 / 5)
    assert got["longest_drawdown_bars"] == 4
    # under water from 2024-01-02 and still under water at the last bar 2024-01-05
    assert got["longest_drawdown_duration"] == pd.Timedelta(days=3)
    assert got["current_drawdown"] == pytest.approx(1.07527992 / 1.1 - 1, rel=1e-12)
    assert got["recovered"] is False


def test_drawdown_analysis_two_episodes_first_bar_loss_counts() -> None:
    got = analyzer().analyze_comprehensive(daily(R2))
    dd = got["drawdown_analysis"]
    # wealth 0.9, 1.08, 1.026, 0.9747, 1.07217, 1.0828917; peaks 1, 1.08, 1.08, 1.08, 1.08, 1.0828917
    expected_dd = [-0.1, 0.0, 1.026 / 1.08 - 1, 0.9747 / 1.08 - 1, 1.07217 / 1.08 - 1, 0.0]
    np.testing.assert_allclose(got.drawdown_series.to_numpy(), expected_dd, atol=1e-12)
    assert dd["max_drawdown"] == pytest.approx(-0.1, abs=1e-12)
    assert dd["num_drawdowns"] == 2
    assert dd["avg_drawdown"] == pytest.approx((-0.1 + (0.9747 / 1.08 - 1)) / 2, rel=1e-12)
    assert dd["time_in_drawdown"] == pytest.approx(4 / 6)
    assert dd["longest_drawdown_bars"] == 3
    # second episode: first bar under water 2024-01-03, recovery bar 2024-01-06
    assert dd["longest_drawdown_duration"] == pd.Timedelta(days=3)
    assert dd["recovered"] is True
    assert got["risk_metrics"]["max_consecutive_losses"] == 2


def test_max_consecutive_losses_flat_bar_breaks_the_run() -> None:
    assert max_consecutive_losses(np.array([-0.01, -0.02, 0.0, -0.01, -0.01, -0.01, 0.02])) == 3
    assert max_consecutive_losses(np.array([0.01, 0.0])) == 0


def test_rolling_metrics_last_window_by_hand() -> None:
    got = analyzer().analyze_comprehensive(daily(R))["rolling_metrics"]
    sharpe, vol = got["rolling_sharpe"], got["rolling_volatility"]
    assert sharpe.iloc[:2].isna().all()
    assert vol.iloc[:2].isna().all()
    # last window 0.02, -0.03, 0.04: mean 0.01; deviations 0.01, -0.04, 0.03 -> (0.0001+0.0016+0.0009)/2 = 0.0013
    assert vol.iloc[-1] == pytest.approx(math.sqrt(0.0013) * 2.0, rel=1e-12)
    assert sharpe.iloc[-1] == pytest.approx(0.01 / math.sqrt(0.0013) * 2.0, rel=1e-12)
    assert sharpe.index.equals(daily(R).index)


def test_equity_curve_and_result_object_give_the_same_analysis() -> None:
    returns = daily(R)
    equity = pd.concat(
        [pd.Series([100.0], index=[returns.index[0] - pd.Timedelta(days=1)]), 100.0 * (1 + returns).cumprod()]
    )

    @dataclass
    class FakeResult:
        equity: pd.Series
        returns: pd.Series

    a = analyzer()
    from_returns = a.analyze_comprehensive(returns).scalar_metrics()
    from_equity = a.analyze_comprehensive(equity).scalar_metrics()
    from_explicit = a.analyze_comprehensive(equity, kind="equity").scalar_metrics()
    from_object = a.analyze_comprehensive(FakeResult(equity=equity, returns=returns)).scalar_metrics()
    for other in (from_equity, from_explicit, from_object):
        assert other.keys() == from_returns.keys()
        for key, value in from_returns.items():
            assert other[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key


def test_series_name_or_kind_decides_when_the_level_is_ambiguous() -> None:
    # A wealth path that lost most of its value has a median below 0.5: only the name or kind tells it apart.
    wealth = pd.Series([1.0, 0.4, 0.3, 0.35], name="equity")
    np.testing.assert_allclose(returns_from(wealth).to_numpy(), [-0.6, -0.25, 0.35 / 0.3 - 1])
    np.testing.assert_allclose(
        returns_from(wealth.rename(None), kind="equity").to_numpy(), [-0.6, -0.25, 0.35 / 0.3 - 1]
    )
    np.testing.assert_allclose(returns_from(wealth.rename(None)).to_numpy(), [1.0, 0.4, 0.3, 0.35])  # guessed returns
    assert returns_from(pd.Series([2.0, 3.0], name="returns")).tolist() == [2.0, 3.0]


def test_returns_from_rejects_bad_input_clearly() -> None:
    with pytest.raises(TypeError, match="pandas Series"):
        returns_from("not a series")
    with pytest.raises(ValueError, match="non-positive"):
        returns_from(pd.Series([100.0, 0.0, 50.0]), kind="equity")
    with pytest.raises(ValueError, match="kind must be"):
        returns_from(pd.Series([0.1]), kind="prices")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rolling_window"):
        AdvancedPerformanceAnalyzer(rolling_window=1)


def test_empty_series_is_well_formed() -> None:
    got = analyzer().analyze_comprehensive(pd.Series([], dtype="float64"))
    assert got.n_periods == 0
    assert got["basic_metrics"]["total_return"] == 0.0
    assert math.isnan(got["basic_metrics"]["sharpe_ratio"])
    assert math.isnan(got["basic_metrics"]["volatility"])
    assert got["drawdown_analysis"]["max_drawdown"] == 0.0
    assert got["drawdown_analysis"]["num_drawdowns"] == 0
    assert got["risk_metrics"]["max_consecutive_losses"] == 0
    assert math.isnan(got["confidence_intervals"]["total_return"]["95%"][0])
    assert got["rolling_metrics"]["rolling_sharpe"].empty


def test_constant_returns_zero_vol_sharpe_is_nan_not_zero_or_inf() -> None:
    got = analyzer().analyze_comprehensive(pd.Series([0.01] * 50))
    basic = got["basic_metrics"]
    assert basic["total_return"] == pytest.approx(1.01**50 - 1, rel=1e-12)
    assert basic["volatility"] == 0.0
    assert math.isnan(basic["sharpe_ratio"])
    assert math.isnan(basic["sortino_ratio"])  # no losing bar
    assert math.isnan(basic["calmar_ratio"])  # no drawdown
    assert got["rolling_metrics"]["rolling_sharpe"].isna().all()
    assert (got["rolling_metrics"]["rolling_volatility"].dropna() < 1e-12).all()


def test_all_positive_returns_have_no_drawdown() -> None:
    r = pd.Series(np.random.default_rng(3).uniform(0.001, 0.02, 100))
    got = analyzer().analyze_comprehensive(r)
    dd = got["drawdown_analysis"]
    assert dd["max_drawdown"] == 0.0
    assert dd["num_drawdowns"] == 0
    assert dd["time_in_drawdown"] == 0.0
    assert dd["longest_drawdown_bars"] == 0
    assert dd["recovered"] is True
    assert got["risk_metrics"]["max_consecutive_losses"] == 0
    assert math.isnan(got["basic_metrics"]["sortino_ratio"])
    assert got["basic_metrics"]["sharpe_ratio"] > 0


def test_drawdown_series_total_loss() -> None:
    dd = drawdown_series(pd.Series([0.5, -1.0]))
    np.testing.assert_allclose(dd.to_numpy(), [0.0, -1.0])
    basic = analyzer().analyze_comprehensive(pd.Series([0.5, -1.0]))["basic_metrics"]
    assert basic["total_return"] == -1.0
    assert basic["annualized_return"] == -1.0


def test_annualising_a_short_strong_sample_overflows_to_inf_not_an_error() -> None:
    basic = AdvancedPerformanceAnalyzer(bars_per_year=252 * 390, n_simulations=10).analyze_comprehensive(
        pd.Series([0.5, 0.4, -0.1])
    )["basic_metrics"]
    assert basic["annualized_return"] == math.inf
    assert basic["total_return"] == pytest.approx(1.5 * 1.4 * 0.9 - 1)


def test_seed_style_dict_access_and_unknown_section() -> None:
    got = analyzer().analyze_comprehensive(daily(R))
    assert set(got.to_dict()) >= {
        "basic_metrics",
        "risk_metrics",
        "drawdown_analysis",
        "rolling_metrics",
        "confidence_intervals",
    }
    with pytest.raises(KeyError, match="basic_metrics"):
        got["metrics"]
