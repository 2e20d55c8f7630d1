"""Where things live in qframe.research: one results schema, tracking as a pure adapter, lazy heavy imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import qframe.research
from qframe.research.backtesting import results

pytestmark = pytest.mark.unit

PACKAGE = Path(qframe.research.__file__).parent
RESULTS_MODULE = Path(results.__file__)


def package_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def top_level_constants(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        names.update(target.id for target in targets if isinstance(target, ast.Name) and target.id.isupper())
    return names


def assigned_names(tree: ast.AST) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name) and isinstance(leaf.ctx, ast.Store):
                        yield leaf.id, node.lineno


def string_literals(tree: ast.AST) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value, node.lineno


def imported_modules(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_results_constants_are_defined_only_in_the_results_module() -> None:
    schema = top_level_constants(parse(RESULTS_MODULE))
    assert {"PARAM_PREFIX", "SAMPLE_FULL", "SAMPLE_IN", "SAMPLE_OUT", "METRIC_COLUMNS"} <= schema
    duplicates = [
        f"{relative(path)}:{line} assigns {name}"
        for path in package_modules()
        if path != RESULTS_MODULE
        for name, line in assigned_names(parse(path))
        if name in schema
    ]
    assert not duplicates, "import these from qframe.research.backtesting.results instead: " + "; ".join(duplicates)


def test_results_column_values_are_spelled_only_in_the_results_module() -> None:
    # A second constant under another name, or a bare literal, would drift just the same.
    values = {results.PARAM_PREFIX, results.SAMPLE_IN, results.SAMPLE_OUT}
    spelled = [
        f"{relative(path)}:{line} spells {value!r}"
        for path in package_modules()
        if path != RESULTS_MODULE
        for value, line in string_literals(parse(path))
        if value in values
    ]
    assert not spelled, "use the constants of qframe.research.backtesting.results: " + "; ".join(spelled)


def test_tracking_imports_no_reporting_plotting_or_backtesting() -> None:
    forbidden = ("qframe.research.reporting", "qframe.research.backtesting", "matplotlib")
    offending = [
        f"{relative(path)} imports {module}"
        for path in sorted((PACKAGE / "tracking").rglob("*.py"))
        for module in imported_modules(parse(path))
        if module.startswith(forbidden)
    ]
    assert not offending, offending


def test_mlflow_is_imported_by_one_module_only() -> None:
    importers = {
        relative(path)
        for path in package_modules()
        for module in imported_modules(parse(path))
        if module == "mlflow" or module.startswith("mlflow.")
    }
    assert importers == {"tracking/mlflow_tracking.py"}


def test_importing_backtesting_loads_no_cluster_or_tracking_library() -> None:
    code = (
        "import sys, qframe.research.backtesting;"
        "loaded = sorted(m for m in ('mlflow', 'dask', 'distributed', 'ray') if m in sys.modules);"
        "print(','.join(loaded)); sys.exit(1 if loaded else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], check=False, timeout=120, capture_output=True, text=True)
    assert run.returncode == 0, f"import qframe.research.backtesting loaded {run.stdout.strip()}{run.stderr[-2000:]}"
