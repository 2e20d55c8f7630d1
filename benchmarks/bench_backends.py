"""Speed-up of the Dask and Ray backends over sequential on one parameter sweep.

    .venv/bin/python -m benchmarks.bench_backends [--bars 1000000] [--combos 600] [--workers 2]

The same sweep (ma_crossover over a fast x slow grid on synthetic bars) runs sequentially in this
process, then on a local Dask cluster and a local Ray runtime with ``--workers`` single-threaded worker
processes. Cluster start-up and the first (numba compile) run on each worker are timed separately and kept
out of the compared figure; every backend's frame is checked equal to the sequential one. Other programs
on the machine skew the figures, so the load average is printed alongside.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import pandas as pd
import structlog
from qframe.research.backtesting.engine import DistributedBacktestEngine
from qframe.research.backtesting.sweep_plan import plan_sweep
from qframe.research.backtesting.types import CostModel, MarketData
from qframe.research.data_lake.synthetic import generate_market_data
from rich.console import Console
from rich.table import Table

STRATEGY = "ma_crossover"


@dataclass(frozen=True)
class BackendTiming:
    backend: str
    startup_s: float
    warmup_s: float
    sweep_s: float
    rows: int

    def as_dict(self) -> dict[str, float | str | int]:
        return {
            "backend": self.backend,
            "startup_s": self.startup_s,
            "warmup_s": self.warmup_s,
            "sweep_s": self.sweep_s,
            "rows": self.rows,
        }


def ma_grid(combos: int) -> dict[str, list[int]]:
    """A fast x slow grid with about ``combos`` valid (fast < slow) combinations."""
    side = max(2, math.ceil(math.sqrt(combos)))
    fast = list(range(2, 2 + side))
    slow = [fast[-1] + 5 + 3 * i for i in range(math.ceil(combos / side))]
    return {"fast": fast, "slow": slow}


def _timed_backend(
    name: str,
    data: MarketData,
    warm: MarketData,
    grid: dict[str, list[int]],
    *,
    workers: int,
    block_size: int,
) -> tuple[BackendTiming, pd.DataFrame]:
    started = time.perf_counter()
    engine = DistributedBacktestEngine(name, max_workers=workers, block_size=block_size, progress=False)
    with engine:
        if engine.backend != name:
            raise RuntimeError(f"{name} did not start here: {engine.fallback_reasons}")
        startup = time.perf_counter() - started
        # Every worker compiles (or loads from numba's cache) its kernels before the timed sweep.
        warm_task = plan_sweep(
            [STRATEGY],
            {warm.name: warm},
            {STRATEGY: {key: values[:2] for key, values in grid.items()}},
            n_splits=0,
            costs=CostModel(),
            initial_capital=100_000.0,
            bars_per_year=252.0,
            block_size=4,
        ).tasks[0]
        started = time.perf_counter()
        engine.compute.warm_up(warm_task, warm)
        warmup = time.perf_counter() - started
        started = time.perf_counter()
        results = engine.run_backtest_sync([STRATEGY], [data], {STRATEGY: grid})
        sweep = time.perf_counter() - started
    return BackendTiming(name, startup, warmup, sweep, len(results.frame)), results.frame


def run_backend_bench(
    *,
    bars: int = 1_000_000,
    combos: int = 2000,
    workers: int = 2,
    block_size: int | None = None,
    backends: Sequence[str] = ("dask", "ray"),
    seed: int = 0,
) -> dict[str, object]:
    """Time the sweep on each backend; return the timings, speed-ups and whether frames matched."""
    grid = ma_grid(combos)
    n_combos = len(grid["fast"]) * len(grid["slow"])
    # Enough tasks per worker that the last one to finish does not leave the others idle for long.
    size = block_size or max(1, n_combos // (workers * 8))
    bars_frame = generate_market_data(["BENCH"], periods=bars, freq="1min", seed=seed)
    data = MarketData.from_bars(bars_frame, symbol="BENCH", name="bench")
    warm = MarketData.from_bars(bars_frame.iloc[:5_000], symbol="BENCH", name="warm")

    timings: list[BackendTiming] = []
    sequential, reference = _timed_backend("sequential", data, warm, grid, workers=1, block_size=size)
    timings.append(sequential)
    matches: dict[str, bool] = {}
    for name in backends:
        timing, frame = _timed_backend(name, data, warm, grid, workers=workers, block_size=size)
        timings.append(timing)
        matches[name] = frame.equals(reference)
    return {
        "bars": bars,
        "combinations": len(reference),
        "block_size": size,
        "workers": workers,
        "timings": [timing.as_dict() for timing in timings],
        "speedup": {timing.backend: sequential.sweep_s / timing.sweep_s for timing in timings[1:]},
        "frames_equal": matches,
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Dask/Ray speed-up over sequential on one backtest sweep.")
    parser.add_argument("--bars", type=int, default=1_000_000, help="synthetic 1-minute bars (default 1,000,000)")
    parser.add_argument("--combos", type=int, default=2000, help="about this many fast x slow combinations")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per backend (default 2)")
    parser.add_argument("--block-size", type=int, default=None, help="combinations per task (default: auto)")
    parser.add_argument("--backends", default="dask,ray", help="comma-separated, from dask and ray")
    args = parser.parse_args(argv)
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = sorted(set(backends) - {"dask", "ray"})
    if unknown:
        parser.error(f"--backends: unknown {unknown}; use dask and/or ray")

    # The engine logs every sweep at info level; the table is the output here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    console = Console(width=max(Console().width, 110))
    console.print(f"sweep: {STRATEGY}, {args.bars:,} bars x ~{args.combos} combinations, {args.workers} workers")
    report = run_backend_bench(
        bars=args.bars, combos=args.combos, workers=args.workers, block_size=args.block_size, backends=backends
    )
    table = Table(title=f"backend speed-up ({report['combinations']} combinations, block {report['block_size']})")
    for column in ("backend", "start-up s", "warm-up s", "sweep s", "speed-up", "bar-evals/s", "equal"):
        table.add_column(column, justify="right")
    speedup = cast("dict[str, float]", report["speedup"])
    equal = cast("dict[str, bool]", report["frames_equal"])
    timings = cast("list[dict[str, Any]]", report["timings"])
    for timing in timings:
        name = str(timing["backend"])
        sweep_s = float(timing["sweep_s"])
        table.add_row(
            name,
            f"{float(timing['startup_s']):.1f}",
            f"{float(timing['warmup_s']):.1f}",
            f"{sweep_s:.2f}",
            f"{speedup[name]:.2f}x" if name in speedup else "1.00x",
            f"{args.bars * int(timing['rows']) / sweep_s:,.0f}",
            "reference" if name == "sequential" else str(equal[name]),
        )
    console.print(table)
    load = report["load_average"]
    console.print(
        f"machine: {report['cpu_count']} CPUs, load average {load} (shared machine: other work skews the figures)"
    )
    console.print("start-up and warm-up (numba compile on each worker) are excluded from the sweep time.")


if __name__ == "__main__":
    main()
