"""Backtesting: strategies, fused kernels, walk-forward sweeps on sequential/Dask/Ray, results and analytics.

Add a strategy by subclassing :class:`Strategy` with a ``name``, its ``parameters`` and a vectorised
``signals``; the engine, the grids and the CLI pick it up by name. Dask and Ray are imported only when
an engine starts on them.
"""

from qframe.research.backtesting.analytics import AdvancedPerformanceAnalyzer, PerformanceAnalysis
from qframe.research.backtesting.engine import DistributedBacktestEngine, run_backtest_sync
from qframe.research.backtesting.evaluate import evaluate_task, simulate
from qframe.research.backtesting.grid import expand_grid
from qframe.research.backtesting.monte_carlo import MonteCarloResult, bootstrap_confidence_intervals
from qframe.research.backtesting.results import (
    BacktestResults,
    StrategySummary,
    get_performance_summary,
    summarize_results,
)
from qframe.research.backtesting.strategies import (
    ParamSpec,
    Strategy,
    StrategyError,
    available_strategies,
    get_strategy,
)
from qframe.research.backtesting.types import BacktestTask, CostModel, MarketData, SimulationResult, SplitWindow
from qframe.research.backtesting.walk_forward import walk_forward_splits

__all__ = [
    "AdvancedPerformanceAnalyzer",
    "BacktestResults",
    "BacktestTask",
    "CostModel",
    "DistributedBacktestEngine",
    "MarketData",
    "MonteCarloResult",
    "ParamSpec",
    "PerformanceAnalysis",
    "SimulationResult",
    "SplitWindow",
    "Strategy",
    "StrategyError",
    "StrategySummary",
    "available_strategies",
    "bootstrap_confidence_intervals",
    "evaluate_task",
    "expand_grid",
    "get_performance_summary",
    "get_strategy",
    "run_backtest_sync",
    "simulate",
    "summarize_results",
    "walk_forward_splits",
]
