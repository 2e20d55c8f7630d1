"""The analyzer on the engine's real SimulationResult agrees with the engine's own kernel metrics.

Two independent implementations (numba kernels vs. the analyzer's pandas/numpy) computing the same figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from qframe.research.backtesting.analytics import AdvancedPerformanceAnalyzer
from qframe.research.backtesting.evaluate import simulate
from qframe.research.backtesting.strategies import available_strategies
from qframe.research.backtesting.types import MarketData
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.reporting import build_tear_sheet

pytestmark = pytest.mark.unit

BARS_PER_YEAR = 252 * 24
PAIRS = {
    "total_return": "total_return",
    "annual_return": "annualized_return",
    "volatility": "volatility",
    "sharpe": "sharpe_ratio",
    "sortino": "sortino_ratio",
}


@pytest.fixture(scope="module")
def market() -> MarketData:
    bars = generate_market_data(["AAA"], periods=2000, freq="1h", seed=3)
    return MarketData.from_bars(bars, symbol="AAA")


@pytest.mark.parametrize("strategy", ["ma_crossover", "adaptive_mean_reversion", "momentum_breakout"])
def test_analyzer_matches_engine_metrics(strategy: str, market: MarketData) -> None:
    assert strategy in available_strategies()
    result = simulate(strategy, market, {}, initial_capital=100_000.0, bars_per_year=BARS_PER_YEAR)
    analysis = AdvancedPerformanceAnalyzer(bars_per_year=BARS_PER_YEAR, n_simulations=200).analyze_comprehensive(result)
    for engine_name, analyzer_name in PAIRS.items():
        assert analysis.basic_metrics[analyzer_name] == pytest.approx(
            result.metrics[engine_name], rel=1e-9, abs=1e-12
        ), engine_name
    assert analysis.drawdown_analysis["max_drawdown"] == pytest.approx(result.metrics["max_drawdown"], rel=1e-9)
    assert analysis.basic_metrics["total_return"] == pytest.approx(result.equity.iloc[-1] / 100_000.0 - 1, rel=1e-9)
    assert analysis.n_periods == result.metrics["n_bars"]


def test_tear_sheet_from_a_simulation(market: MarketData, tmp_path: Path) -> None:
    result = simulate("ma_crossover", market, {}, initial_capital=100_000.0, bars_per_year=BARS_PER_YEAR)
    sheet = build_tear_sheet(
        result.equity,
        result.returns,
        title="ma_crossover defaults",
        out_dir=tmp_path,
        analyzer=AdvancedPerformanceAnalyzer(bars_per_year=BARS_PER_YEAR, n_simulations=200),
    )
    assert sheet.png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sheet.analysis.basic_metrics["sharpe_ratio"] == pytest.approx(result.metrics["sharpe"], rel=1e-9)
