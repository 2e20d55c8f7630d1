"""One deterministic sweep shared by the engine tests and the resume driver subprocess."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
from qframe.research.data_lake.synthetic import generate_market_data

STRATEGIES: list[str] = ["ma_crossover", "adaptive_mean_reversion"]
GRIDS: dict[str, dict[str, list[float | int]]] = {
    "ma_crossover": {"fast": [3, 5, 8, 13], "slow": [21, 34, 55]},
    "adaptive_mean_reversion": {"lookback_short": [5, 10], "lookback_long": [30, 60], "z_entry_base": [1.0, 1.5]},
}
SYMBOLS: tuple[str, ...] = ("AAA", "BBB")


def workload_bars(periods: int = 2_000, symbols: Sequence[str] = SYMBOLS, seed: int = 11) -> pd.DataFrame:
    return generate_market_data(list(symbols), periods=periods, freq="1h", seed=seed)


def n_combinations(grids: Mapping[str, Mapping[str, Sequence[float | int]]] = GRIDS) -> dict[str, int]:
    counts: dict[str, int] = {}
    for strategy, grid in grids.items():
        total = 1
        for values in grid.values():
            total *= len(values)
        counts[strategy] = total
    return counts
