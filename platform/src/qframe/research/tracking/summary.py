"""Summary figures of one strategy's results table: the best combination and aggregates over the grid.

The results table has one row per (combination, split) with ``param_<name>`` columns and metric columns
(``sharpe``, ``total_return``, ``max_drawdown``, ``n_trades``...). Rows of the same combination (walk-forward
splits, datasets) are averaged first, so "best" means best on average, not best on one lucky split.

Walk-forward tables (the engine's ``sample`` column): the grid figures come from the ``in_sample``/``full`` rows
only; the ``out_of_sample`` rows of the combinations chosen on each train window (``selected``) give the
separate ``oos.*`` figures -- the honest estimate, never mixed with in-sample numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

PARAM_PREFIX = "param_"
AGGREGATED_METRICS: tuple[str, ...] = ("sharpe", "total_return", "annual_return", "max_drawdown", "n_trades")
# Identifier columns: numeric in some tables (split_id) but never a metric.
_ID_COLUMNS = frozenset({"task_id", "strategy", "dataset", "split_id", "split", "fold", "window", "n_bars"})
OUT_OF_SAMPLE = "out_of_sample"


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


def param_columns(results: pd.DataFrame) -> list[str]:
    return [c for c in results.columns if isinstance(c, str) and c.startswith(PARAM_PREFIX)]


def metric_columns(results: pd.DataFrame) -> list[str]:
    params = set(param_columns(results))
    return [
        c
        for c in results.columns
        if c not in params
        and c not in _ID_COLUMNS
        and pd.api.types.is_numeric_dtype(results[c])
        and not pd.api.types.is_bool_dtype(results[c])
    ]


def grid_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Rows that evaluate the whole grid: everything but walk-forward out-of-sample rows."""
    if "sample" not in results.columns:
        return results
    return results[results["sample"] != OUT_OF_SAMPLE]


def out_of_sample_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Walk-forward test-window rows of the combinations selected on the train window (empty without WF)."""
    if "sample" not in results.columns:
        return results.iloc[0:0]
    oos = results[results["sample"] == OUT_OF_SAMPLE]
    if "selected" in oos.columns:
        oos = oos[oos["selected"].astype(bool)]
    return oos


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
