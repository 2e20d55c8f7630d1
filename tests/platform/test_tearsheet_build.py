"""Tear sheet: real PNG and offline HTML on disk, metric values shown, heat map pivot equal to the table."""

from __future__ import annotations

import re
import struct
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from qframe.research.backtesting.analytics import AdvancedPerformanceAnalyzer
from qframe.research.reporting import build_tear_sheet, format_value, heatmap_pivot

pytestmark = pytest.mark.unit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sample_returns(n: int = 400) -> pd.Series:
    index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    return pd.Series(np.random.default_rng(4).normal(0.0004, 0.01, n), index=index, name="returns")


def results_table() -> pd.DataFrame:
    rows = []
    for split in (0, 1):
        for fast in (5, 10, 20):
            for slow in (50, 100):
                rows.append(
                    {
                        "strategy": "ma_crossover",
                        "split_id": split,
                        "param_fast": fast,
                        "param_slow": slow,
                        # distinct per cell and per split so the mean over splits is checkable
                        "sharpe": fast / 10 + slow / 100 + split,
                        "total_return": fast * slow / 1000,
                    }
                )
    return pd.DataFrame(rows)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_heatmap_pivot_matches_the_table_by_hand() -> None:
    pivot = heatmap_pivot(results_table(), ("fast", "param_slow"), metric="sharpe")
    assert list(pivot.index) == [5, 10, 20]
    assert list(pivot.columns) == [50, 100]
    assert pivot.index.name == "fast"
    assert pivot.columns.name == "slow"
    # mean over splits 0 and 1: fast/10 + slow/100 + 0.5
    assert pivot.loc[5, 50] == pytest.approx(0.5 + 0.5 + 0.5)
    assert pivot.loc[20, 100] == pytest.approx(2.0 + 1.0 + 0.5)
    table = results_table()
    for fast in (5, 10, 20):
        for slow in (50, 100):
            cell = table[(table.param_fast == fast) & (table.param_slow == slow)]["sharpe"].mean()
            assert pivot.loc[fast, slow] == pytest.approx(cell)


def test_heatmap_pivot_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"parameters available: \['fast', 'slow'\]"):
        heatmap_pivot(results_table(), ("fast", "window"))
    with pytest.raises(ValueError, match="metric 'calmar'"):
        heatmap_pivot(results_table(), ("fast", "slow"), metric="calmar")
    with pytest.raises(ValueError, match="two different"):
        heatmap_pivot(results_table(), ("fast", "param_fast"))


def test_build_tear_sheet_writes_png_and_offline_html(tmp_path: Path) -> None:
    returns = sample_returns()
    equity = 1_000_000 * (1 + returns).cumprod()
    analyzer = AdvancedPerformanceAnalyzer(bars_per_year=252 * 24, n_simulations=300)
    sheet = build_tear_sheet(
        equity,
        returns,
        results=results_table(),
        heatmap_params=("fast", "slow"),
        title="MA crossover <best>",
        out_dir=tmp_path / "report",
        file_stem="ma_crossover",
        analyzer=analyzer,
    )
    assert sheet.png_path == tmp_path / "report" / "ma_crossover.png"
    png = sheet.png_path.read_bytes()
    width, height = png_size(png)
    assert (width, height) == (1200, 1600)  # 12 x 16 inches: one year in the monthly table
    assert 30_000 < len(png) < 5_000_000

    page = sheet.html_path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, flags=re.IGNORECASE)
    assert "<script" not in page.lower()
    assert "MA crossover &lt;best&gt;" in page  # escaped title
    assert "data:image/png;base64," in page
    expected = analyzer.analyze_comprehensive(returns, kind="returns")
    for value in (
        expected.basic_metrics["total_return"],
        expected.basic_metrics["sharpe_ratio"],
        expected.basic_metrics["sortino_ratio"],
        expected.risk_metrics["var_95"],
        expected.risk_metrics["cvar_95"],
        expected.drawdown_analysis["max_drawdown"],
    ):
        assert format_value(value) in page
    lo, hi = expected.confidence_intervals["total_return"]["95%"]
    assert f"[{format_value(lo)}, {format_value(hi)}]" in page
    # the heat map table carries the pivot values
    assert sheet.heatmap is not None
    for value in sheet.heatmap.to_numpy().ravel():
        assert f"<td>{format_value(float(value))}</td>" in page
    assert not list((tmp_path / "report").glob(".*"))  # no temp files left behind


def test_tear_sheet_without_heatmap_and_with_flat_returns(tmp_path: Path) -> None:
    returns = pd.Series([0.0] * 50)
    sheet = build_tear_sheet((1 + returns).cumprod(), returns, out_dir=tmp_path, title="flat")
    assert sheet.heatmap is None
    assert png_size(sheet.png_path.read_bytes())[0] > 0
    assert "n/a" in sheet.html_path.read_text(encoding="utf-8")  # undefined Sharpe shown as n/a, not nan


def test_bad_input_is_rejected_before_writing(tmp_path: Path) -> None:
    returns = sample_returns(50)
    out = tmp_path / "nothing"
    with pytest.raises(ValueError, match="needs the results table"):
        build_tear_sheet(returns, returns, heatmap_params=("fast", "slow"), out_dir=out)
    with pytest.raises(ValueError, match="parameters available"):
        build_tear_sheet(returns, returns, results=results_table(), heatmap_params=("x", "y"), out_dir=out)
    with pytest.raises(TypeError, match="pandas Series"):
        build_tear_sheet([1.0, 2.0], returns, out_dir=out)
    assert not out.exists()


def test_no_pyplot_state_is_touched(tmp_path: Path) -> None:
    build_tear_sheet(sample_returns(60), sample_returns(60), out_dir=tmp_path)
    assert "matplotlib.pyplot" not in sys.modules or not sys.modules["matplotlib.pyplot"].get_fignums()
