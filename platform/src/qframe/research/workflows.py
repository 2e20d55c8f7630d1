"""The researcher's sweep, start to finish: run the grid, summarise, draw tear sheets, track, write files.

Used by ``qframe backtest`` and ``qframe demo``; notebooks can call :func:`run_research_sweep` directly.
Outputs in ``out_dir``: ``results.parquet`` (every row of the sweep), ``summary.csv`` (best per
strategy and dataset), and one tear sheet per strategy and symbol: ``tear_sheets/<strategy>.png|.html``
when the sweep has one symbol, ``tear_sheets/<strategy>.<symbol>.png|.html`` when it has several. A sheet
shows the best combination, or with walk-forward splits the chained out-of-sample equity of the
parameters chosen on each split, against buying and holding the symbol over the same bars.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import structlog
from matplotlib.figure import Figure
from qframe.research.atomic_files import atomic_write
from qframe.research.backtesting.analytics import AdvancedPerformanceAnalyzer
from qframe.research.backtesting.engine import DistributedBacktestEngine
from qframe.research.backtesting.evaluate import simulate
from qframe.research.backtesting.results import (
    PARAM_PREFIX,
    SAMPLE_OUT,
    BacktestResults,
    get_performance_summary,
    grid_rows,
    param_columns,
)
from qframe.research.backtesting.types import CostModel, MarketData
from qframe.research.backtesting.walk_forward import walk_forward_splits
from qframe.research.bar_frequency import resolve_frequency
from qframe.research.data_lake.storage import DataLakeStorage
from qframe.research.reporting.benchmark import buy_and_hold_equity
from qframe.research.reporting.strategy_report import log_strategy_report
from qframe.research.reporting.tear_sheet import build_tear_sheet, sheet_title
from qframe.research.reporting.tear_sheet_figure import SheetContext, SplitMark
from qframe.research.tracking.base import ExperimentTracker

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SweepOptions:
    """How to run one sweep; the defaults are the demo's."""

    compute_backend: str = "auto"
    address: str | None = None
    max_workers: int | None = None
    n_splits: int = 0
    train_size: int | None = None
    test_size: int | None = None
    purge: int = 0
    costs: CostModel = field(default_factory=CostModel)
    initial_capital: float = 100_000.0
    bars_per_year: float | None = None  # None: inferred per dataset from the timestamps
    selection_metric: str = "sharpe"
    progress: bool = True


@dataclass(frozen=True)
class SweepReport:
    results: BacktestResults
    summary: pd.DataFrame
    results_path: Path
    summary_path: Path
    # "<strategy> on <symbol>" -> (png, html); run ids by the same keys.
    tear_sheets: dict[str, tuple[Path, Path]]
    tracking_run_ids: dict[str, str]
    backend: str
    # The drawn sheets by the same keys (matplotlib Figures: display one in a notebook cell to see it again).
    figures: dict[str, Figure] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        """A notebook cell ending with the report shows the sweep's results table."""
        return self.results._repr_html_()


def run_research_sweep(
    strategies: Sequence[str],
    datasets: Sequence[MarketData],
    parameter_grids: Mapping[str, Mapping[str, Sequence[float | int]]],
    *,
    out_dir: str | Path,
    options: SweepOptions | None = None,
    tracker: ExperimentTracker | None = None,
    sweep_name: str = "sweep",
    checkpoint_storage: DataLakeStorage | None = None,
    source: str | None = None,
) -> SweepReport:
    """Run the sweep on the chosen backend, then write and track everything about it.

    ``source`` names where the datasets came from (``bars.demo-1h@v1``, a file name) in the tear sheets' titles.
    """
    opts = options or SweepOptions()
    if not datasets:
        raise ValueError("no datasets to backtest; pass at least one MarketData (e.g. MarketData.from_bars(bars))")
    out = Path(out_dir)
    with DistributedBacktestEngine(
        compute_backend=opts.compute_backend,
        address=opts.address,
        max_workers=opts.max_workers,
        checkpoint_storage=checkpoint_storage,
        progress=opts.progress,
    ) as engine:
        results = engine.run_backtest_sync(
            strategies,
            list(datasets),
            parameter_grids,
            n_splits=opts.n_splits,
            initial_capital=opts.initial_capital,
            costs=opts.costs,
            bars_per_year=opts.bars_per_year,
            train_size=opts.train_size,
            test_size=opts.test_size,
            purge=opts.purge,
            selection_metric=opts.selection_metric,
        )
        backend = engine.backend
    summary = get_performance_summary(results, metric=opts.selection_metric)
    # Created only now: a sweep refused for its input leaves no empty results directory behind.
    out.mkdir(parents=True, exist_ok=True)
    results_path = _atomic_parquet(results.frame, out / "results.parquet")
    summary_path = _atomic_csv(summary, out / "summary.csv")

    sheets: dict[str, tuple[Path, Path]] = {}
    figures: dict[str, Figure] = {}
    run_ids: dict[str, str] = {}
    first = datasets[0]
    # One annualisation per dataset, the sweep's: the tear sheet, the tracked analysis and the summary agree.
    frequencies = {
        data.name: results.frequencies.get(data.name) or resolve_frequency(data.timestamps, opts.bars_per_year)
        for data in datasets
    }
    tracking = (
        tracker.start_sweep(
            sweep_name,
            params={
                "strategies": list(strategies),
                "datasets": [d.name for d in datasets],
                "grids": {k: {p: list(v) for p, v in g.items()} for k, g in parameter_grids.items()},
                "backend": backend,
                "n_splits": opts.n_splits,
                "purge": opts.purge,
                "commission": opts.costs.commission,
                "slippage": opts.costs.slippage,
                "initial_capital": opts.initial_capital,
                **frequencies[first.name].as_params(),
            },
            tags={"qframe.sweep_id": results.sweep_id},
        )
        if tracker is not None
        else contextlib.nullcontext()
    )
    # The parent run ends FINISHED, or FAILED if anything below raises (start_sweep's contract).
    with tracking:
        for strategy in strategies:
            for data in datasets:
                frequency = frequencies[data.name]
                analyzer = AdvancedPerformanceAnalyzer(frequency=frequency)
                best_opts = replace(opts, bars_per_year=frequency.bars_per_year)
                rows = strategy_rows(results.frame, strategy, data.name)
                equity, returns = best_equity(strategy, data, rows, best_opts)
                context = SheetContext(
                    symbol=data.name,
                    dataset=source,
                    benchmark=buy_and_hold_equity(
                        pd.Series(data.close, index=data.index), returns.index, opts.initial_capital
                    ),
                    splits=walk_forward_marks(rows, data, opts),
                )
                heatmap = _heatmap_params(rows)
                stem = strategy if len(datasets) == 1 else f"{strategy}.{data.name}"
                key = f"{strategy} on {data.name}"
                if tracker is not None:
                    report = log_strategy_report(
                        tracker,
                        strategy,
                        rows,
                        equity=equity,
                        returns=returns,
                        out_dir=out / "tear_sheets",
                        params={"dataset": data.name},
                        metric=opts.selection_metric,
                        heatmap_params=heatmap,
                        analyzer=analyzer,
                        context=context,
                        file_stem=stem,
                    )
                    run_ids[key] = report.run_id
                    sheet = report.tear_sheet
                else:
                    sheet = build_tear_sheet(
                        equity,
                        returns,
                        results=grid_rows(rows) if heatmap else None,
                        heatmap_params=heatmap,
                        heatmap_metric=opts.selection_metric,
                        title=sheet_title(
                            strategy, context, metric=opts.selection_metric, best_params=_best_params(rows, opts)
                        ),
                        out_dir=out / "tear_sheets",
                        file_stem=stem,
                        analyzer=analyzer,
                        context=context,
                    )
                sheets[key] = (sheet.png_path, sheet.html_path)
                if sheet.figure is not None:
                    figures[key] = sheet.figure
    log.info("research sweep written", out_dir=str(out), rows=len(results.frame), backend=backend)
    return SweepReport(results, summary, results_path, summary_path, sheets, run_ids, backend, figures)


def best_equity(strategy: str, data: MarketData, rows: pd.DataFrame, opts: SweepOptions) -> tuple[pd.Series, pd.Series]:
    """Equity and returns of the chosen parameters: chained test windows for walk-forward, else the full series."""
    params = param_columns(rows)
    if "sample" in rows.columns and (rows["sample"] == SAMPLE_OUT).any():
        chosen = rows[(rows["sample"] == SAMPLE_OUT) & rows["selected"].astype(bool)].sort_values("split_id")
        # The engine derives the same windows from the same inputs.
        windows = walk_forward_splits(
            len(data), opts.n_splits, train_size=opts.train_size, test_size=opts.test_size, purge=opts.purge
        )
        pieces = []
        for _, row in chosen.iterrows():
            combo = _combo(row, params)
            split = windows[int(row["split_id"])].window(SAMPLE_OUT)
            sim = simulate(
                strategy,
                data,
                combo,
                costs=opts.costs,
                initial_capital=opts.initial_capital,
                bars_per_year=opts.bars_per_year,
                window=split,
            )
            pieces.append(sim.returns)
        returns = pd.concat(pieces).sort_index()
        returns = returns[~returns.index.duplicated(keep="first")]
        equity = opts.initial_capital * (1.0 + returns).cumprod()
        return equity.rename("equity"), returns.rename("returns")
    scores = rows.groupby(params, sort=True)[opts.selection_metric].mean()
    # No combination has a score (e.g. flat prices): show the first one, as the summaries do.
    top = scores.index[0] if scores.isna().all() else scores.idxmax()
    best = dict(zip(params, np.atleast_1d(top), strict=True))
    sim = simulate(
        strategy,
        data,
        _combo(pd.Series(best), params),
        costs=opts.costs,
        initial_capital=opts.initial_capital,
        bars_per_year=opts.bars_per_year,
    )
    return sim.equity, sim.returns


def walk_forward_marks(rows: pd.DataFrame, data: MarketData, opts: SweepOptions) -> tuple[SplitMark, ...]:
    """Each walk-forward test window's first bar and the parameters chosen for it (empty without splits)."""
    if "sample" not in rows.columns or not (rows["sample"] == SAMPLE_OUT).any():
        return ()
    params = param_columns(rows)
    chosen = rows[(rows["sample"] == SAMPLE_OUT) & rows["selected"].astype(bool)].sort_values("split_id")
    windows = walk_forward_splits(
        len(data), opts.n_splits, train_size=opts.train_size, test_size=opts.test_size, purge=opts.purge
    )
    index = data.index
    return tuple(
        SplitMark(index[windows[int(row["split_id"])].test_start], _combo(row, params)) for _, row in chosen.iterrows()
    )


def _best_params(rows: pd.DataFrame, opts: SweepOptions) -> dict[str, float | int]:
    params = param_columns(rows)
    scores = rows.groupby(params, sort=True)[opts.selection_metric].mean()
    top = scores.index[0] if scores.isna().all() else scores.idxmax()
    return _combo(pd.Series(dict(zip(params, np.atleast_1d(top), strict=True))), params)


def strategy_rows(frame: pd.DataFrame, strategy: str, dataset: str) -> pd.DataFrame:
    """One strategy's rows on one dataset with only its own parameter columns, whole numbers as integers.

    The sweep frame holds every strategy's parameters (NaN where a strategy lacks one), which would
    otherwise show up as float and NaN parameters in summaries, titles and heat maps.
    """
    rows = frame[(frame["strategy"] == strategy) & (frame["dataset"] == dataset)]
    foreign = [c for c in param_columns(rows) if rows[c].isna().all()]
    rows = rows.drop(columns=foreign)
    for column in param_columns(rows):
        values = rows[column]
        if values.notna().all() and bool((values == values.round()).all()):
            rows = rows.assign(**{column: values.astype("int64")})
    return rows


def _combo(row: pd.Series, params: Sequence[str]) -> dict[str, float | int]:
    combo: dict[str, float | int] = {}
    for column in params:
        value = row[column]
        if pd.isna(value):
            continue
        number = value.item() if hasattr(value, "item") else value
        combo[column[len(PARAM_PREFIX) :]] = int(number) if float(number).is_integer() else float(number)
    return combo


def _heatmap_params(rows: pd.DataFrame) -> tuple[str, str] | None:
    varied = [c for c in param_columns(rows) if rows[c].nunique(dropna=True) > 1]
    if len(varied) < 2:
        return None
    return varied[0][len(PARAM_PREFIX) :], varied[1][len(PARAM_PREFIX) :]


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> Path:
    return _atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))


def _atomic_csv(frame: pd.DataFrame, path: Path) -> Path:
    return _atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def _atomic(path: Path, write: Any) -> Path:
    return atomic_write(path, write)
