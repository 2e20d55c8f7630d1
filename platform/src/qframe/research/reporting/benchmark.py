"""The buy-and-hold benchmark a tear sheet draws next to the strategy: the same capital, held from the first bar."""

from __future__ import annotations

import numpy as np
import pandas as pd


def buy_and_hold_equity(close: pd.Series, index: pd.Index, initial_capital: float) -> pd.Series:
    """Equity of holding the asset over the bars of ``index``, compounded like the strategy's equity.

    The strategy's first bar already carries that bar's return (equity = capital x prod(1 + r)), so the
    benchmark takes the close-to-close return into each bar of ``index`` from the bar before it in ``close``.
    """
    if not index.isin(close.index).all():
        missing = int((~index.isin(close.index)).sum())
        raise ValueError(f"{missing} bar(s) of the strategy's returns are not in the price series; pass the same bars")
    bar_returns = close.astype(np.float64).pct_change().fillna(0.0)
    held = bar_returns.loc[index]
    return (initial_capital * (1.0 + held).cumprod()).rename("buy_and_hold")
