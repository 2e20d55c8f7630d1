"""Notebook display of sweep results and analyses: ``_repr_html_`` tables and ``.plot()`` plotly figures."""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from qframe.research.backtesting.analytics import AdvancedPerformanceAnalyzer, PerformanceAnalysis
from qframe.research.backtesting.engine import run_backtest_sync
from qframe.research.backtesting.results import BacktestResults, get_performance_summary
from qframe.research.backtesting.types import MarketData
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.reporting import format_value

pytestmark = pytest.mark.unit

# A symbol a user could type that is also markup: it must show as text.
ODD_NAME = "<b>AAA</b>&co"
GRID = {"ma_crossover": {"fast": [5, 10], "slow": [30, 60]}}


class Tables(HTMLParser):
    """Every <table>'s rows as lists of cell texts (header cells included), as a browser would show them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables_of(page: str) -> list[list[list[str]]]:
    parser = Tables()
    parser.feed(page)
    return parser.tables


def market(*names: str) -> list[MarketData]:
    bars = generate_market_data(["AAA", "BBB"][: len(names)], periods=800, freq="1h", seed=7)
    return [
        MarketData.from_bars(bars, symbol=symbol, name=name)
        for symbol, name in zip(["AAA", "BBB"], names, strict=False)
    ]


@pytest.fixture(scope="module")
def grid_results() -> BacktestResults:
    return run_backtest_sync(["ma_crossover"], market(ODD_NAME, "BBB"), GRID, compute_backend="sequential")


@pytest.fixture(scope="module")
def walk_forward_results() -> BacktestResults:
    return run_backtest_sync(["ma_crossover"], market("AAA"), GRID, compute_backend="sequential", n_splits=3)


@pytest.fixture(scope="module")
def analysis() -> PerformanceAnalysis:
    index = pd.date_range("2024-01-01", periods=500, freq="h", tz="UTC")
    returns = pd.Series(np.random.default_rng(2).normal(0.0003, 0.01, 500), index=index, name="returns")
    return AdvancedPerformanceAnalyzer(n_simulations=50, rolling_window=48).analyze_comprehensive(returns)


def test_results_html_is_the_summary_table_with_names_escaped(grid_results: BacktestResults) -> None:
    page = grid_results._repr_html_()
    assert "<script" not in page.lower()
    assert "<b>AAA</b>" not in page  # the symbol is text, not bold markup
    assert "&lt;b&gt;AAA&lt;/b&gt;&amp;co" in page
    summary = get_performance_summary(grid_results)
    (table,) = tables_of(page)
    header, *rows = table
    assert header == list(summary.columns)
    assert len(rows) == 2
    by_dataset = {row[header.index("dataset")]: row for row in rows}
    assert set(by_dataset) == {ODD_NAME, "BBB"}
    for _, expected in summary.iterrows():
        row = by_dataset[expected["dataset"]]
        assert row[header.index("best_sharpe")] == format_value(expected["best_sharpe"])
        assert row[header.index("n_combinations")] == "4"
        fast, slow = int(expected["best_params"]["param_fast"]), int(expected["best_params"]["param_slow"])
        assert row[header.index("best_params")].startswith(f"fast={fast}, slow={slow}")
    assert f"Sweep {grid_results.sweep_id}" in page
    assert "1h bars, 24/7 calendar: 8,760 bars/year" in page


def test_walk_forward_results_html_shows_out_of_sample_columns(walk_forward_results: BacktestResults) -> None:
    (table,) = tables_of(walk_forward_results._repr_html_())
    header, row = table
    assert header[:4] == ["strategy", "dataset", "mode", "n_splits"]
    assert row[2:4] == ["walk_forward", "3"]
    assert "oos_compounded_return" in header
    assert "walk-forward, selected by sharpe" in walk_forward_results._repr_html_()


def test_analysis_html_tables_hold_the_metrics(analysis: PerformanceAnalysis) -> None:
    page = analysis._repr_html_()
    tables = tables_of(page)
    assert [t[0] for t in tables] == [["metric", "value"]] * 3
    values = {name: value for table in tables for name, value in table[1:]}
    assert values["sharpe_ratio"] == format_value(analysis.basic_metrics["sharpe_ratio"])
    assert values["max_drawdown"] == format_value(analysis.drawdown_analysis["max_drawdown"])
    assert values["num_drawdowns"] == str(analysis.drawdown_analysis["num_drawdowns"])
    assert "of 500 periods, annualised with 1h bars, 24/7 calendar" in page


def test_results_plot_is_a_plotly_figure_of_every_combination(grid_results: BacktestResults) -> None:
    fig = grid_results.plot()
    assert isinstance(fig, go.Figure)
    assert fig.layout.title.text.startswith("sharpe against total return of every parameter combination")
    assert (fig.layout.xaxis.title.text, fig.layout.yaxis.title.text) == ("total return (%)", "sharpe")
    names = [trace.name for trace in fig.data]
    assert names == [f"ma_crossover on {name}" for name in sorted([ODD_NAME, "BBB"])]
    frame = grid_results.frame
    for trace in fig.data:
        rows = frame[frame["dataset"] == trace.name.removeprefix("ma_crossover on ")]
        assert list(trace.x) == pytest.approx((rows["total_return"] * 100).to_list())
        assert list(trace.y) == pytest.approx(rows["sharpe"].to_list(), nan_ok=True)
        assert trace.text[0].startswith("fast=")


def test_walk_forward_plot_pairs_in_and_out_of_sample_per_split(walk_forward_results: BacktestResults) -> None:
    fig = walk_forward_results.plot()
    assert isinstance(fig, go.Figure)
    assert [trace.name for trace in fig.data] == [
        "ma_crossover on AAA, in-sample",
        "ma_crossover on AAA, out-of-sample",
    ]
    assert fig.layout.xaxis.title.text == "walk-forward split"
    frame = walk_forward_results.frame
    oos = frame[(frame["sample"] == "out_of_sample") & frame["selected"]].sort_values("split_id")
    assert list(fig.data[1].x) == [0, 1, 2]
    assert list(fig.data[1].y) == pytest.approx(oos["sharpe"].to_list(), nan_ok=True)


def test_analysis_plot_draws_the_analysed_returns(analysis: PerformanceAnalysis) -> None:
    fig = analysis.plot()
    assert isinstance(fig, go.Figure)
    assert [trace.name for trace in fig.data] == ["cumulative return", "drawdown", "rolling Sharpe"]
    subtitles = [a.text for a in fig.layout.annotations]
    assert subtitles == ["Cumulative return (%)", "Drawdown (%)", "Rolling Sharpe (48-bar window, annualised)"]
    assert fig.data[0].y[-1] == pytest.approx(analysis.basic_metrics["total_return"] * 100)
    assert min(fig.data[1].y) == pytest.approx(analysis.drawdown_analysis["max_drawdown"] * 100)
    assert "annualised with 1h bars" in fig.layout.title.text
    # Written out, the figure carries plotly.js itself: nothing is fetched from a CDN.
    page = fig.to_html(include_plotlyjs=True, full_html=True)
    assert not re.search(r"<script[^>]+src=", page)


def test_plot_without_plotly_says_what_to_install(
    analysis: PerformanceAnalysis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes the import fail as it does where plotly is not installed.
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install plotly"):
        analysis.plot()
