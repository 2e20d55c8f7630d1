"""Where the shared sources and each chart's generated files are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REGENERATE_COMMAND = "python -m tools.chartkit"
FULLNAME_MAX_LENGTH_ANNOTATION = "qframe.io/fullname-max-length"


@dataclass(frozen=True)
class Layout:
    """The chart tree rooted at `root` (the repository, or a copy of it in a test)."""

    root: Path = REPO_ROOT

    @property
    def charts_dir(self) -> Path:
        return self.root / "charts"

    @property
    def shared_dir(self) -> Path:
        return self.charts_dir / "_shared"

    @property
    def common_tpl(self) -> Path:
        return self.shared_dir / "_common.tpl"

    @property
    def schema_fragments_dir(self) -> Path:
        return self.shared_dir / "schema"

    def charts(self) -> list[Path]:
        """Every chart directory (one with a Chart.yaml), sorted; _shared has none."""
        return sorted(chart_yaml.parent for chart_yaml in self.charts_dir.glob("*/Chart.yaml"))


def common_tpl_copy(chart: Path) -> Path:
    return chart / "templates" / "_common.tpl"


def values_schema(chart: Path) -> Path:
    return chart / "values.schema.json"


def values_yaml(chart: Path) -> Path:
    return chart / "values.yaml"


def readme(chart: Path) -> Path:
    return chart / "README.md"
