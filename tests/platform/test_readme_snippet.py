"""The README's research snippet runs, as written, right after `qframe demo` with default settings (issue 15
item 12): the demo writes into the default work directory that create_research_integration() reads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import structlog
from qframe.research.backtesting import BacktestResults, get_performance_summary
from qframe.research.cli import app
from qframe.research.settings import DEFAULT_WORKDIR
from typer.testing import CliRunner

# The snippet starts a local Dask cluster, like the demo's own end-to-end test.
pytestmark = pytest.mark.services

README = Path(__file__).resolve().parents[2] / "README.md"
# The snippet reads 2024-03-01 .. 2024-06-01; the demo's bars start on 2024-01-01.
DEMO_HOURS = 3700


def readme_research_snippet() -> str:
    section = README.read_text().split("## For researchers", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "README's 'For researchers' section has no python block"
    return found.group(1)


@pytest.fixture
def fresh_laptop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory with no QFRAME_* or MLflow settings, as after a clone."""
    for key in ("QFRAME_LAKE_URL", "QFRAME_CATALOG_URL", "QFRAME_WORKDIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    structlog.reset_defaults()


def test_the_readme_snippet_runs_after_the_demo_with_default_settings(fresh_laptop: Path) -> None:
    demo = CliRunner().invoke(
        app, ["-q", "demo", "--periods", str(DEMO_HOURS), "--backend", "sequential", "--splits", "2"]
    )
    assert demo.exit_code == 0, demo.output
    assert (fresh_laptop / DEFAULT_WORKDIR / "lake").is_dir()

    namespace: dict[str, object] = {}
    exec(compile(readme_research_snippet(), str(README), "exec"), namespace)  # noqa: S102 - the README's own text
    results = cast(BacktestResults, namespace["results"])
    assert list(get_performance_summary(results)["strategy"]) == ["ma_crossover"]
    assert set(results.frame["dataset"]) == {"AAA"}
