"""The results frame of a sweep: its column names, the walk-forward choice, and the two summaries of it.

Every module that reads or writes the frame takes its column names from here, so a renamed column cannot
drift between the evaluator, the engine, the summaries and the reports.

One row per strategy x dataset x split x window x parameter combination: ``task_id``, ``strategy``,
``dataset``, ``split_id`` (-1 without walk-forward), ``sample`` (:data:`SAMPLE_FULL`, :data:`SAMPLE_IN` or
:data:`SAMPLE_OUT`), one ``param_<name>`` column per parameter of any strategy in the sweep (NaN where a
strategy lacks it), the :data:`METRIC_COLUMNS`, and ``selected`` (the combination chosen on that split's
train window; every row without walk-forward).

Two summaries read it, for two audiences:

- :func:`get_performance_summary`: one row per strategy x dataset, for the command line and ``summary.csv``.
- :func:`summarize_results`: one strategy's best combination and grid aggregates, as flat figures for a
  tracking run. Rows of one combination (splits, datasets) are averaged first, so "best" means best on
  average, not best on one lucky split; out-of-sample rows only feed the separate ``oos.*`` figures.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PARAM_PREFIX = "param_"
SAMPLE_FULL = "full"
SAMPLE_IN = "in_sample"
SAMPLE_OUT = "out_of_sample"
METRIC_COLUMNS: tuple[str, ...] = (
    "total_return",
    "annual_return",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "n_trades",
    "exposure",
    "final_equity",
    "n_bars",
)
SELECTION_METRICS: tuple[str, ...] = ("sharpe", "sortino", "total_return", "annual_return", "final_equity")
AGGREGATED_METRICS: tuple[str, ...] = ("sharpe", "total_return", "annual_return", "max_drawdown", "n_trades")
# Identifier columns: numeric in some tables (split_id) but never a metric.
ID_COLUMNS = frozenset({"task_id", "strategy", "dataset", "split_id", "split", "fold", "window", "n_bars"})


@dataclass(frozen=True)
class BacktestResults:
    """The rows of one sweep (the frame described in the module docstring) and how it ran."""

    frame: pd.DataFrame
    sweep_id: str
    backend: str
    n_tasks: int
    n_computed: int
    n_resumed: int
    elapsed_seconds: float
    walk_forward: bool
    selection_metric: str
    extra: dict[str, Any] = field(default_factory=dict)
    # Dataset -> the annualisation its rows were computed with (a frequency.BarFrequency).
    frequencies: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    def _repr_html_(self) -> str:
        """How the sweep ran and its summary per strategy and dataset, for a notebook cell."""
        from qframe.research.reporting.notebook_html import results_html  # noqa: PLC0415 - reporting imports us

        return results_html(self)

    def plot(self) -> Any:
        """An interactive plotly ``go.Figure`` of the sweep, offline (see ``reporting.interactive``)."""
        from qframe.research.reporting.interactive import results_figure  # noqa: PLC0415 - reporting imports us

        return results_figure(self)


def param_columns(results: pd.DataFrame) -> list[str]:
    return [c for c in results.columns if isinstance(c, str) and c.startswith(PARAM_PREFIX)]


def metric_columns(results: pd.DataFrame) -> list[str]:
    params = set(param_columns(results))
    return [
        c
        for c in results.columns
        if c not in params
        and c not in ID_COLUMNS
        and pd.api.types.is_numeric_dtype(results[c])
        and not pd.api.types.is_bool_dtype(results[c])
    ]


def grid_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Rows that evaluate the whole grid: everything but walk-forward out-of-sample rows."""
    if "sample" not in results.columns:
        return results
    return results[results["sample"] != SAMPLE_OUT]


def out_of_sample_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Walk-forward test-window rows of the combinations selected on the train window (empty without WF)."""
    if "sample" not in results.columns:
        return results.iloc[0:0]
    oos = results[results["sample"] == SAMPLE_OUT]
    if "selected" in oos.columns:
        oos = oos[oos["selected"].astype(bool)]
    return oos


def label_results(frame: pd.DataFrame, *, walk_forward: bool, selection_metric: str) -> pd.DataFrame:
    """Add ``sample`` (when the evaluator did not) and ``selected``: the in-sample winner of each split."""
    frame = frame.copy()
    if "sample" not in frame.columns:
        frame["sample"] = SAMPLE_FULL
    if not walk_forward:
        frame["selected"] = True
        return frame
    params = param_columns(frame)
    group_keys = ["strategy", "dataset", "split_id"]
    in_sample = frame[frame["sample"] == SAMPLE_IN]
    # NaN scores (e.g. a flat series) never win; ties go to the first combination in grid order.
    score = in_sample[selection_metric].astype(float).fillna(-np.inf)
    winners = in_sample.loc[score.groupby([in_sample[key] for key in group_keys], sort=False).idxmax()]
    chosen = winners[group_keys + params].assign(selected=True)
    merged = frame.merge(chosen, on=group_keys + params, how="left", sort=False)
    merged["selected"] = merged["selected"].fillna(False).astype(bool)
    return merged


# Summary per strategy x dataset ---------------------------------------------------------------------------


def get_performance_summary(results: BacktestResults | pd.DataFrame, *, metric: str | None = None) -> pd.DataFrame:
    """One row per strategy x dataset: the best combination and how the whole grid did.

    Without walk-forward: the best combination by ``metric`` (default sharpe) with its metrics, plus the
    number of combinations, median and spread of the metric and the share of profitable combinations.
    With walk-forward: the out-of-sample result of the parameters chosen in-sample on each split (mean
    metric, compounded return, worst drawdown), the in-sample metric of the same choices (to see the
    decay) and the most often chosen parameters.
    """
    if isinstance(results, BacktestResults):
        frame = results.frame
        metric = metric or results.selection_metric
    else:
        frame = results
    metric = metric or "sharpe"
    if frame.empty:
        raise ValueError("the results are empty; nothing to summarise")
    required = {"strategy", "dataset", metric, "total_return", "max_drawdown", "n_trades"}
    missing = sorted(required - set(frame.columns))
    if missing:
        raise ValueError(f"results frame lacks columns {missing}; pass what run_backtest_sync returned")
    params = param_columns(frame)
    walk_forward = "sample" in frame.columns and bool((frame["sample"] == SAMPLE_OUT).any())
    rows: list[dict[str, Any]] = []
    for (strategy, dataset), group in frame.groupby(["strategy", "dataset"], sort=True):
        if walk_forward:
            rows.append(_walk_forward_summary(str(strategy), str(dataset), group, metric, params))
        else:
            rows.append(_grid_summary(str(strategy), str(dataset), group, metric, params))
    return pd.DataFrame(rows)


def _best_params(row: pd.Series, params: Sequence[str]) -> dict[str, Any]:
    return {column: row[column] for column in params if pd.notna(row[column])}


def _grid_summary(
    strategy: str, dataset: str, group: pd.DataFrame, metric: str, params: Sequence[str]
) -> dict[str, Any]:
    ranked = group.sort_values([metric, "total_return"], ascending=False, kind="stable", na_position="last")
    best = ranked.iloc[0]
    values = group[metric].to_numpy(dtype=float)
    return {
        "strategy": strategy,
        "dataset": dataset,
        "mode": "grid",
        "n_combinations": len(group),
        f"best_{metric}": float(best[metric]),
        "best_total_return": float(best["total_return"]),
        "best_max_drawdown": float(best["max_drawdown"]),
        "best_n_trades": int(best["n_trades"]),
        "best_params": _best_params(best, params),
        f"median_{metric}": float(np.nanmedian(values)) if np.isfinite(values).any() else float("nan"),
        f"std_{metric}": float(np.nanstd(values)) if np.isfinite(values).any() else float("nan"),
        "share_profitable": float((group["total_return"] > 0).mean()),
    }


def _walk_forward_summary(
    strategy: str, dataset: str, group: pd.DataFrame, metric: str, params: Sequence[str]
) -> dict[str, Any]:
    chosen = group[group["selected"]]
    oos = chosen[chosen["sample"] == SAMPLE_OUT].sort_values("split_id")
    ins = chosen[chosen["sample"] == SAMPLE_IN].sort_values("split_id")
    compounded = float(np.prod(1.0 + oos["total_return"].to_numpy(dtype=float)) - 1.0)
    choices = [tuple(sorted(_best_params(row, params).items())) for _, row in oos.iterrows()]
    # Counter keeps first-seen order among equals, so a tie goes to the earliest split's choice.
    most_chosen = dict(Counter(choices).most_common(1)[0][0]) if choices else {}
    return {
        "strategy": strategy,
        "dataset": dataset,
        "mode": "walk_forward",
        "n_splits": int(oos["split_id"].nunique()),
        "n_combinations": int(len(group[group["sample"] == SAMPLE_IN]) // max(1, ins["split_id"].nunique())),
        f"oos_mean_{metric}": float(oos[metric].mean()),
        f"is_mean_{metric}": float(ins[metric].mean()),
        "oos_compounded_return": compounded,
        "oos_worst_drawdown": float(oos["max_drawdown"].min()),
        "oos_n_trades": int(oos["n_trades"].sum()),
        "most_chosen_params": most_chosen,
    }


# Summary of one strategy, for its tracking run ------------------------------------------------------------


@dataclass(frozen=True)
class StrategySummary:
    metric: str
    best_params: dict[str, float | int]
    best_metrics: dict[str, float]
    aggregates: dict[str, float]
    n_combinations: int
    n_rows: int

    def metrics(self) -> dict[str, float]:
        """Flat ``best.<metric>`` / ``<stat>.<metric>`` figures ready for ``ExperimentTracker.log_strategy``."""
        out = {f"best.{name}": value for name, value in self.best_metrics.items()}
        out.update(self.aggregates)
        out["combinations"] = float(self.n_combinations)
        out["rows"] = float(self.n_rows)
        return out

    def params(self) -> dict[str, float | int]:
        return {f"best.{name}": value for name, value in self.best_params.items()}


def summarize_results(results: pd.DataFrame, *, metric: str = "sharpe", maximize: bool = True) -> StrategySummary:
    """Best combination by ``metric`` (averaged over its rows) and mean/median/min/max of the key metrics."""
    if not isinstance(results, pd.DataFrame) or results.empty:
        raise ValueError("results must be a non-empty DataFrame (one row per parameter combination and split)")
    oos = out_of_sample_rows(results)
    all_rows = results
    results = grid_rows(results)
    if results.empty:
        raise ValueError("results have only out-of-sample rows; pass the whole table including in-sample rows")
    params = param_columns(results)
    if not params:
        raise ValueError(f"results have no '{PARAM_PREFIX}<name>' columns; columns: {list(results.columns)}")
    metrics = metric_columns(results)
    if metric not in metrics:
        raise ValueError(f"metric {metric!r} is not a numeric column of the results; metric columns: {metrics}")
    per_combo = results.groupby(params, dropna=False, sort=True)[metrics].mean().reset_index()
    scores = per_combo[metric]
    if scores.isna().all():
        best_position = 0  # nothing to rank: report the first combination, its metrics show NaN
    elif maximize:
        best_position = int(np.nanargmax(scores))
    else:
        best_position = int(np.nanargmin(scores))
    # Column by column: a row Series would upcast integer parameters to float.
    best = {c: per_combo[c].iloc[best_position] for c in per_combo.columns}
    aggregates: dict[str, float] = {}
    for name in AGGREGATED_METRICS:
        if name not in per_combo.columns:
            continue
        column = per_combo[name].dropna()
        if column.empty:
            continue
        aggregates[f"mean.{name}"] = float(column.mean())
        aggregates[f"median.{name}"] = float(column.median())
        aggregates[f"min.{name}"] = float(column.min())
        aggregates[f"max.{name}"] = float(column.max())
    aggregates.update(_oos_aggregates(oos))
    return StrategySummary(
        metric=metric,
        best_params={p.removeprefix(PARAM_PREFIX): _python_number(best[p]) for p in params},
        best_metrics={m: float(best[m]) if not pd.isna(best[m]) else math.nan for m in metrics},
        aggregates=aggregates,
        n_combinations=len(per_combo),
        n_rows=len(all_rows),
    )


def _oos_aggregates(oos: pd.DataFrame) -> dict[str, float]:
    if oos.empty:
        return {}
    out: dict[str, float] = {"oos.rows": float(len(oos))}
    if "split_id" in oos.columns:
        out["oos.splits"] = float(oos["split_id"].nunique())
    for name in AGGREGATED_METRICS:
        if name in oos.columns and oos[name].notna().any():
            out[f"oos.mean.{name}"] = float(oos[name].mean())
    if "total_return" in oos.columns:
        # Test windows follow each other, so their returns compound into the walk-forward return.
        out["oos.compounded_return"] = float(np.prod(1.0 + oos["total_return"].dropna().to_numpy(dtype=float)) - 1.0)
    if "max_drawdown" in oos.columns and oos["max_drawdown"].notna().any():
        out["oos.worst.max_drawdown"] = float(oos["max_drawdown"].min())
    return out


def _python_number(value: object) -> float | int:
    if isinstance(value, np.integer | int) and not isinstance(value, bool):
        return int(value)
    return float(value)  # type: ignore[arg-type]
