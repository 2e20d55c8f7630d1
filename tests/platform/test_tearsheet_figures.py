"""What a tear sheet draws, read back from its matplotlib Figure: labels, units, titles, lines, tables, sheets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from qframe.research.backtesting.analytics import AdvancedPerformanceAnalyzer
from qframe.research.backtesting.types import MarketData
from qframe.research.bar_frequency import BarFrequency, given, infer_bar_frequency
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.reporting import (
    SheetContext,
    build_tear_sheet,
    buy_and_hold_equity,
    monthly_returns_table,
    rolling_window_for,
    sheet_title,
)
from qframe.research.reporting.monthly_returns import MONTHS
from qframe.research.reporting.tear_sheet_figure import MAX_HEATMAP_TICKS, SPLIT_BOUNDARY_GID
from qframe.research.workflows import SweepOptions, run_research_sweep

pytestmark = pytest.mark.unit


def hourly_returns(n: int, seed: int = 4) -> pd.Series:
    index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    return pd.Series(np.random.default_rng(seed).normal(0.0002, 0.01, n), index=index, name="returns")


def axes_titled(fig: Figure, start: str) -> Axes:
    found = [ax for ax in fig.axes if ax.get_title().startswith(start)]
    assert len(found) == 1, [ax.get_title() for ax in fig.axes]
    return found[0]


def boundaries(ax: Axes) -> int:
    return sum(1 for line in ax.lines if line.get_gid() == SPLIT_BOUNDARY_GID)


def line_labels(ax: Axes) -> list[str]:
    return [str(line.get_label()) for line in ax.lines]


def test_single_run_sheet_has_labelled_axes_units_title_and_benchmark(tmp_path: Path) -> None:
    returns = hourly_returns(3000)
    close = pd.Series(100.0 * np.exp(np.cumsum(returns.to_numpy() * 0.5)), index=returns.index)
    context = SheetContext(
        symbol="BTCUSDT",
        dataset="crypto.hourly@v1",
        benchmark=buy_and_hold_equity(close, returns.index, 100_000.0),
    )
    title = sheet_title("ma_crossover", context, metric="sharpe", best_params={"fast": 10, "slow": 50})
    sheet = build_tear_sheet(
        100_000 * (1 + returns).cumprod(),
        returns,
        title=title,
        out_dir=tmp_path,
        analyzer=AdvancedPerformanceAnalyzer(n_simulations=50),
        context=context,
    )
    fig = sheet.figure
    assert fig is not None
    suptitle = fig.get_suptitle()
    assert "ma_crossover on BTCUSDT (crypto.hourly@v1): best by sharpe fast=10, slow=50" in suptitle
    assert "annualised with 1h bars, 24/7 calendar: 8,760 bars/year" in suptitle

    equity = axes_titled(fig, "Equity")
    assert equity.get_ylabel() == "Equity (account currency)"
    assert equity.get_xlabel() == "Time (UTC)"
    assert line_labels(equity) == ["Strategy", "Buy and hold BTCUSDT"]
    assert boundaries(equity) == 0
    bench = np.asarray(equity.lines[1].get_ydata(), dtype=float)
    assert bench[-1] == pytest.approx(100_000.0 * close.iloc[-1] / close.iloc[0])

    drawdown = axes_titled(fig, "Drawdown")
    assert drawdown.get_ylabel() == "Drawdown (%)"
    max_dd = sheet.analysis.drawdown_analysis["max_drawdown"] * 100
    assert f"(max {max_dd:.1f}%)" in drawdown.get_title()
    ticks = [t.get_text() for t in drawdown.get_yticklabels() if t.get_text()]
    assert ticks
    assert all(t.endswith("%") for t in ticks)
    # the drawn area is in percent, not in fractions
    assert drawdown.dataLim.ymin == pytest.approx(max_dd, rel=1e-6)

    # 3,000 hourly 24/7 bars: 3 months (2,190 bars) would not fit three times, one month (730) does
    rolling = axes_titled(fig, "Rolling Sharpe")
    assert rolling.get_title() == "Rolling Sharpe ratio over a 1-month window (730 bars)"
    assert rolling.get_ylabel() == "Sharpe ratio (annualised)"
    assert sheet.rolling_window is not None
    assert sheet.rolling_window.bars == 730

    distribution = axes_titled(fig, "Distribution of returns")
    assert distribution.get_xlabel() == "Return per bar (%)"
    assert distribution.get_ylabel() == "Number of bars"


def test_monthly_table_is_drawn_with_the_compounded_months_in_percent(tmp_path: Path) -> None:
    index = pd.date_range("2023-12-30", "2024-02-28", freq="D", tz="UTC")
    returns = pd.Series(0.0, index=index)
    returns[pd.Timestamp("2023-12-31", tz="UTC")] = 0.10
    returns[pd.Timestamp("2024-01-15", tz="UTC")] = 0.01
    returns[pd.Timestamp("2024-01-20", tz="UTC")] = 0.02
    returns[pd.Timestamp("2024-02-10", tz="UTC")] = -0.05

    table = monthly_returns_table(returns)
    assert table is not None
    assert list(table.index) == [2023, 2024]
    assert table.loc[2024, "Jan"] == pytest.approx((1.01 * 1.02 - 1) * 100)
    assert table.loc[2024, "Year"] == pytest.approx((1.01 * 1.02 * 0.95 - 1) * 100)
    assert np.isnan(table.loc[2024, "Mar"])

    sheet = build_tear_sheet((1 + returns).cumprod(), returns, out_dir=tmp_path, title="months")
    assert sheet.figure is not None
    ax = axes_titled(sheet.figure, "Monthly returns (%)")
    (drawn,) = ax.tables
    cells = {key: cell.get_text().get_text() for key, cell in drawn.get_celld().items()}
    assert [cells[(0, j)] for j in range(13)] == [*MONTHS, "Year"]
    assert (cells[(1, -1)], cells[(2, -1)]) == ("2023", "2024")
    assert cells[(1, 11)] == "+10.0"  # December 2023
    assert cells[(2, 0)] == "+3.0"  # 1.01 x 1.02
    assert cells[(2, 1)] == "-5.0"
    assert cells[(2, 2)] == ""  # no bars in March
    assert cells[(2, 12)] == "-2.1"  # 1.01 x 1.02 x 0.95
    page = sheet.html_path.read_text(encoding="utf-8")
    assert "<h2>Monthly returns (%)</h2>" in page
    assert "<td>+3.0</td><td>-5.0</td>" in page


def test_heatmap_tick_labels_are_thinned_turned_and_compact(tmp_path: Path) -> None:
    rows = [
        {"param_fast": fast, "param_slow": slow, "sharpe": fast / slow}
        for fast in np.arange(2.0, 27.0)  # 25 values, floats as a results frame stores them
        for slow in range(100, 400, 10)  # 30 values
    ]
    results = pd.DataFrame(rows)
    sheet = build_tear_sheet(
        hourly_returns(300), hourly_returns(300), results=results, heatmap_params=("fast", "slow"), out_dir=tmp_path
    )
    assert sheet.figure is not None
    ax = axes_titled(sheet.figure, "sharpe by parameters")
    xlabels = [t.get_text() for t in ax.get_xticklabels()]
    ylabels = [t.get_text() for t in ax.get_yticklabels()]
    assert 5 <= len(xlabels) <= MAX_HEATMAP_TICKS
    assert 5 <= len(ylabels) <= MAX_HEATMAP_TICKS
    assert xlabels[:3] == ["100", "130", "160"]  # every third of 30 columns
    assert ylabels[:3] == ["2", "5", "8"]  # 2.0 shown as typed, not 2.0000
    assert all(t.get_rotation() == 45 for t in ax.get_xticklabels())
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("slow", "fast")
    assert not ax.texts  # 750 cells: no per-cell numbers to overprint each other
    colorbar = [a for a in sheet.figure.axes if a.get_ylabel() == "sharpe"]
    assert len(colorbar) == 1


@pytest.mark.parametrize(
    ("frequency", "n_bars", "expected"),
    [
        (infer_bar_frequency(pd.date_range("2024-01-01", periods=500, freq="h", tz="UTC")), 3000, (730, "1 month")),
        (infer_bar_frequency(pd.date_range("2024-01-01", periods=500, freq="h", tz="UTC")), 400, (24, "1 day")),
        (infer_bar_frequency(pd.bdate_range("2024-01-01", periods=50, tz="UTC")), 1000, (126, "6 months")),
        (infer_bar_frequency(pd.bdate_range("2024-01-01", periods=50, tz="UTC")), 100, (21, "1 month")),
        (given(52.0), 500, (26, "6 months")),
        (BarFrequency(252.0, "unknown", "default"), 100, (10, "10 bars")),
    ],
)
def test_rolling_window_is_a_span_of_time_chosen_from_the_bar_frequency(
    frequency: BarFrequency, n_bars: int, expected: tuple[int, str]
) -> None:
    window = rolling_window_for(frequency, n_bars)
    assert (window.bars, window.span) == expected


def test_buy_and_hold_compounds_the_close_from_the_bar_before() -> None:
    index = pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")
    close = pd.Series([100.0, 110.0, 99.0], index=index)
    equity = buy_and_hold_equity(close, index[1:], 1_000.0)
    assert equity.to_list() == pytest.approx([1_100.0, 990.0])
    with pytest.raises(ValueError, match="not in the price series"):
        buy_and_hold_equity(close, pd.date_range("2025-01-01", periods=2, tz="UTC"), 1_000.0)


def test_walk_forward_sweep_draws_one_sheet_per_symbol_with_split_boundaries(tmp_path: Path) -> None:
    bars = generate_market_data(["AAA", "BBB"], periods=1500, freq="1h", seed=3)
    market = [MarketData.from_bars(bars, symbol=s, name=s) for s in ("AAA", "BBB")]
    report = run_research_sweep(
        ["ma_crossover"],
        market,
        {"ma_crossover": {"fast": [5, 10], "slow": [30, 60]}},
        out_dir=tmp_path / "out",
        options=SweepOptions(compute_backend="sequential", n_splits=3, purge=5, progress=False),
        source="bars.test@v1",
    )
    assert sorted(report.figures) == ["ma_crossover on AAA", "ma_crossover on BBB"]
    assert sorted(p.name for p in (tmp_path / "out" / "tear_sheets").glob("*.png")) == [
        "ma_crossover.AAA.png",
        "ma_crossover.BBB.png",
    ]
    frame = report.results.frame
    for symbol in ("AAA", "BBB"):
        fig = report.figures[f"ma_crossover on {symbol}"]
        title = fig.get_suptitle()
        assert f"ma_crossover on {symbol} (bars.test@v1): walk-forward out-of-sample, 3 test windows chained" in title
        assert "parameters chosen by sharpe on its own train window" in title
        equity = axes_titled(fig, "Out-of-sample equity of 3 chained test windows")
        assert boundaries(equity) == 3 - 1
        assert boundaries(axes_titled(fig, "Drawdown")) == 3 - 1
        assert line_labels(equity)[:2] == ["Strategy", f"Buy and hold {symbol}"]
        chosen = frame[(frame["dataset"] == symbol) & (frame["sample"] == "out_of_sample") & frame["selected"]]
        first = chosen.sort_values("split_id").iloc[0]
        # The chosen parameters label a top axis of the equity panel, one tick per split.
        (top,) = equity.child_axes
        captions = [t.get_text().replace("\n", " ") for t in top.get_xticklabels()]
        assert len(captions) == 3
        caption = captions[0]
        assert caption.startswith(f"split 0: fast={int(first['param_fast'])}, slow={int(first['param_slow'])}")
        page = (tmp_path / "out" / "tear_sheets" / f"ma_crossover.{symbol}.html").read_text(encoding="utf-8")
        assert "<h2>Walk-forward test windows</h2>" in page


def test_single_symbol_sweep_keeps_the_strategy_file_name(tmp_path: Path) -> None:
    bars = generate_market_data(["AAA"], periods=600, freq="1h", seed=3)
    report = run_research_sweep(
        ["ma_crossover"],
        [MarketData.from_bars(bars, symbol="AAA", name="AAA")],
        {"ma_crossover": {"fast": [5, 10], "slow": [30, 60]}},
        out_dir=tmp_path,
        options=SweepOptions(compute_backend="sequential", progress=False),
    )
    png, html = report.tear_sheets["ma_crossover on AAA"]
    assert (png.name, html.name) == ("ma_crossover.png", "ma_crossover.html")
    fig = report.figures["ma_crossover on AAA"]
    assert fig.get_suptitle().startswith("ma_crossover on AAA: best by sharpe fast=")
    assert boundaries(axes_titled(fig, "Equity")) == 0
    assert report._repr_html_() == report.results._repr_html_()  # a notebook shows the results table
