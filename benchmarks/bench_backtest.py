"""Single-core speed and peak memory of the backtest kernels (``make bench``).

    .venv/bin/python -m benchmarks.bench_backtest [--bars 1000000] [--combos 100] [--memory-combos 1000]

ma_crossover over a fast x slow grid on one synthetic series, all combinations in one ``evaluate_task`` call
(every metric per combination: total/annual return, volatility, Sharpe, Sortino, max drawdown, trades,
exposure). The process is pinned to one CPU and numba runs single-threaded, so the figure is per core.
The first call (numba compile, or loading its on-disk cache) is reported apart from the warm runs
(best and median of ``--repeats``). Peak memory for ``--memory-combos`` combinations is measured in a
fresh subprocess (its own ``ru_maxrss``), so this process's allocations do not count. Other programs on
the machine skew the figures: the load average is printed alongside.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from qframe.research.backtesting.types import BacktestTask, CostModel, MarketData
from rich.console import Console
from rich.table import Table

STRATEGY = "ma_crossover"


def synthetic_series(n_bars: int, *, seed: int = 0) -> MarketData:
    """A regime-switching random walk of ``n_bars`` hourly bars (numpy only, a second for a million bars)."""
    rng = np.random.default_rng(seed)
    regime_len = 2_000
    n_regimes = n_bars // regime_len + 1
    drift = np.repeat(rng.normal(0.0, 2e-4, n_regimes), regime_len)[:n_bars]
    vol = np.repeat(rng.uniform(0.002, 0.012, n_regimes), regime_len)[:n_bars]
    close = 100.0 * np.exp(np.cumsum(drift + vol * rng.standard_normal(n_bars)))
    spread = close * vol
    stamps = np.datetime64("2015-01-01T00:00", "ns") + np.arange(n_bars) * np.timedelta64(1, "h")
    return MarketData(
        name="bench",
        timestamps=stamps,
        open=np.concatenate([[close[0]], close[:-1]]),
        high=close + spread,
        low=close - spread,
        close=close,
        volume=np.full(n_bars, 1_000.0),
    )


def ma_combos(count: int) -> list[dict[str, int]]:
    """``count`` valid combinations: a fast x slow grid (fast < slow always), long/short."""
    side = max(1, math.isqrt(count))
    fast = [5 + 5 * i for i in range(side)]
    slow = [fast[-1] + 10 + 10 * i for i in range(math.ceil(count / side))]
    combos = [{"fast": f, "slow": s, "allow_short": 1} for s in slow for f in fast]
    return combos[:count]


def _task(data: MarketData, combos: Sequence[dict[str, int]]) -> BacktestTask:
    return BacktestTask(
        task_id="bench",
        strategy=STRATEGY,
        dataset=data.name,
        params=tuple(dict(combo) for combo in combos),
        costs=CostModel(),
        initial_capital=100_000.0,
        bars_per_year=252.0 * 24,
    )


def run_core_bench(*, bars: int = 1_000_000, combos: int = 100, repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    """Time ``evaluate_task`` on ``bars`` x ``combos`` in this process; figures as a dict (seconds, evals/s)."""
    from qframe.research.backtesting.evaluate import evaluate_task  # noqa: PLC0415 - timed: numba load/compile

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    data = synthetic_series(bars, seed=seed)
    task = _task(data, ma_combos(combos))
    started = time.perf_counter()
    first = evaluate_task(task, data)
    first_s = time.perf_counter() - started
    warm = []
    for _ in range(repeats):
        started = time.perf_counter()
        frame = evaluate_task(task, data)
        warm.append(time.perf_counter() - started)
    if not frame.equals(first):
        raise RuntimeError("evaluate_task gave different frames on identical inputs")
    evaluations = bars * len(task.params)
    best, median = min(warm), statistics.median(warm)
    return {
        "strategy": STRATEGY,
        "bars": bars,
        "combos": len(task.params),
        "bar_evaluations": evaluations,
        "first_run_s": first_s,
        "warm_runs_s": warm,
        "warm_best_s": best,
        "warm_median_s": median,
        "evals_per_s_best": evaluations / best,
        "evals_per_s_median": evaluations / median,
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "numba_threads": os.environ.get("NUMBA_NUM_THREADS", "default"),
        "load_avg_1m": os.getloadavg()[0],
        "best_sharpe": float(first["sharpe"].max()),
        "mean_trades": float(first["n_trades"].mean()),
    }


def measure_peak_memory(*, bars: int = 1_000_000, combos: int = 1_000, seed: int = 0) -> dict[str, Any]:
    """Run ``bars`` x ``combos`` in a fresh single-threaded subprocess and report its peak RSS."""
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "benchmarks.bench_backtest", "--memory-probe"]
    command += ["--bars", str(bars), "--memory-combos", str(combos), "--seed", str(seed)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=3_600)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _memory_probe(bars: int, combos: int, seed: int) -> dict[str, Any]:
    from qframe.research.backtesting.evaluate import evaluate_task  # noqa: PLC0415

    data = synthetic_series(bars, seed=seed)
    task = _task(data, ma_combos(combos))
    baseline_mb = _peak_rss_mb()
    started = time.perf_counter()
    frame = evaluate_task(task, data)
    elapsed = time.perf_counter() - started
    peak_mb = _peak_rss_mb()
    return {
        "bars": bars,
        "combos": len(task.params),
        "rows": len(frame),
        "seconds": elapsed,
        "peak_rss_mb": peak_mb,
        "rss_before_evaluate_mb": baseline_mb,
        "input_mb": sum(getattr(data, c).nbytes for c in ("timestamps", "open", "high", "low", "close", "volume"))
        / 2**20,
    }


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM).

    Not ``getrusage().ru_maxrss``: Linux carries that over from the parent across fork + exec, so a probe
    started by a big benchmark process would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pin_to_one_cpu() -> int:
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--combos", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-combos", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="ignored here (the backend bench uses it)")
    parser.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.memory_probe:
        sys.stdout.write(json.dumps(_memory_probe(args.bars, args.memory_combos, args.seed)) + "\n")
        return
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    cpu = _pin_to_one_cpu()
    core = run_core_bench(bars=args.bars, combos=args.combos, repeats=args.repeats, seed=args.seed)
    memory = measure_peak_memory(bars=args.bars, combos=args.memory_combos, seed=args.seed)
    if args.json:
        sys.stdout.write(json.dumps({"core": core, "memory": memory}) + "\n")
        return
    console = Console()
    table = Table(title=f"backtest kernels: {STRATEGY}, one core (cpu {cpu}), load avg {core['load_avg_1m']:.2f}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("bars x combinations", f"{core['bars']:,} x {core['combos']:,}")
    table.add_row("first run (compile or cache load) (s)", f"{core['first_run_s']:.3f}")
    table.add_row("warm runs (s)", ", ".join(f"{s:.3f}" for s in core["warm_runs_s"]))
    table.add_row("bar-evaluations/s, best warm", f"{core['evals_per_s_best'] / 1e6:,.1f} M")
    table.add_row("bar-evaluations/s, median warm", f"{core['evals_per_s_median'] / 1e6:,.1f} M")
    table.add_row(
        f"peak RSS, {memory['bars']:,} x {memory['combos']:,} (fresh process)",
        f"{memory['peak_rss_mb']:,.0f} MB ({memory['seconds']:.2f} s)",
    )
    table.add_row(
        "  of which before evaluate (interpreter, libs, input)", f"{memory['rss_before_evaluate_mb']:,.0f} MB"
    )
    console.print(table)


if __name__ == "__main__":
    main()
