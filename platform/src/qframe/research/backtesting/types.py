"""The values that travel between the sweep planner, the compute backends and the kernels.

All are frozen, picklable and cheap to hash: a :class:`MarketData` is shipped once per worker, a
:class:`BacktestTask` (a block of parameter combinations) many times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from qframe.research.backtesting.results import SAMPLE_IN, SAMPLE_OUT

ParamValue = float | int
Params = Mapping[str, ParamValue]
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class CostModel:
    """Proportional trading costs, as fractions of the traded notional (0.0005 = 5 basis points)."""

    commission: float = 0.0005
    slippage: float = 0.0005

    def __post_init__(self) -> None:
        for name in ("commission", "slippage"):
            value = getattr(self, name)
            if not (np.isfinite(value) and 0.0 <= value < 0.1):
                raise ValueError(f"CostModel.{name} must be a fraction in [0, 0.1), got {value!r}")

    @property
    def rate(self) -> float:
        """Cost per unit of traded notional."""
        return self.commission + self.slippage


@dataclass(frozen=True, eq=False)
class MarketData:
    """One price series (one symbol) as float64 numpy arrays; ``timestamps`` are UTC datetime64[ns]."""

    name: str
    timestamps: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.close)
        if n < 2:
            raise ValueError(f"market data {self.name!r} has {n} bar(s); a backtest needs at least 2")
        for column in ("timestamps", *PRICE_COLUMNS):
            if len(getattr(self, column)) != n:
                raise ValueError(f"market data {self.name!r}: column {column} has a different length than close")
        if not np.all(np.isfinite(self.close)) or np.any(self.close <= 0):
            raise ValueError(f"market data {self.name!r}: close prices must be finite and > 0 (validate the bars)")

    def __len__(self) -> int:
        return len(self.close)

    @property
    def index(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.timestamps, tz="UTC")

    @classmethod
    def from_bars(cls, bars: pd.DataFrame, *, symbol: str | None = None, name: str | None = None) -> MarketData:
        """One symbol's bars (lake layout) as arrays; ``symbol`` picks it when the frame holds several."""
        frame = bars
        if "symbol" in bars.columns:
            symbols = bars["symbol"].astype(str).unique()
            if symbol is None:
                if len(symbols) != 1:
                    raise ValueError(
                        f"the bars hold {len(symbols)} symbols ({', '.join(sorted(symbols)[:5])}...); pass symbol="
                    )
                symbol = str(symbols[0])
            frame = bars[bars["symbol"].astype(str) == symbol]
            if frame.empty:
                raise ValueError(f"symbol {symbol!r} is not in the bars; present: {', '.join(sorted(symbols)[:10])}")
        missing = [column for column in ("timestamp", *PRICE_COLUMNS) if column not in frame.columns]
        if missing:
            raise ValueError(f"bars lack column(s) {missing}; expected the lake's OHLCV layout")
        frame = frame.sort_values("timestamp", kind="stable")
        stamps = pd.to_datetime(frame["timestamp"], utc=True).dt.tz_convert("UTC").dt.tz_localize(None)
        arrays = {column: np.ascontiguousarray(frame[column].to_numpy(dtype=np.float64)) for column in PRICE_COLUMNS}
        return cls(
            name=name or symbol or "series",
            timestamps=stamps.to_numpy(dtype="datetime64[ns]"),
            **arrays,
        )


@dataclass(frozen=True)
class SplitWindow:
    """Bar index ranges of one walk-forward split (half-open: ``[start, end)``).

    ``purge`` bars between train end and test start are in neither window, so labels or indicators
    computed near the boundary cannot leak from test into train.
    """

    split_id: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int

    def __post_init__(self) -> None:
        if not (0 <= self.train_start < self.train_end <= self.test_start < self.test_end):
            raise ValueError(f"split {self.split_id} is not ordered train < test: {self}")

    def window(self, sample: str) -> tuple[int, int]:
        """``(start, end)`` of ``"in_sample"`` (train) or ``"out_of_sample"`` (test)."""
        if sample == SAMPLE_IN:
            return self.train_start, self.train_end
        if sample == SAMPLE_OUT:
            return self.test_start, self.test_end
        raise ValueError(f"sample must be 'in_sample' or 'out_of_sample', got {sample!r}")


@dataclass(frozen=True)
class BacktestTask:
    """A block of parameter combinations of one strategy on one dataset, whole series or one split.

    With a ``split``, each combination is evaluated on the train window (rows ``sample="in_sample"``)
    and on the test window (``"out_of_sample"``). A window's P&L counts only bars inside it; bars
    before it are indicator history (warm-up), bars after it are never read. Without a split, the
    whole series is one window (``"full"``).
    """

    task_id: str
    strategy: str
    dataset: str
    params: tuple[dict[str, ParamValue], ...]
    costs: CostModel = field(default_factory=CostModel)
    initial_capital: float = 100_000.0
    bars_per_year: float = 252.0
    split: SplitWindow | None = None
    # The strategy class pickled by value when workers cannot import it (notebook, script, exec'd code).
    strategy_code: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SimulationResult:
    """Everything about one parameter combination: per-bar equity, returns, positions, and its metrics."""

    strategy: str
    params: dict[str, ParamValue]
    equity: pd.Series
    returns: pd.Series
    positions: pd.Series
    metrics: dict[str, Any]
