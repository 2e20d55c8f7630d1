"""`qframe backtest` and `qframe report`: a grid sweep from the command line, and its summary table."""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from qframe.research.cli._bars_file import (
    ColumnMap,
    Separator,
    SourceTz,
    TimestampUnitOption,
    in_cli_words,
    read_bars,
    read_options,
)
from qframe.research.cli._common import (
    EXIT_FAILED,
    CatalogUrl,
    LakeUrl,
    Workdir,
    choice_error,
    console,
    err_console,
    fail,
    plain_errors,
    settings_from,
)
from qframe.research.cli.tables import OutputFormat, folding_table, plain_params, render_records
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

# Above this estimate a sweep asks before starting (on a terminal) or needs --yes (elsewhere).
DEFAULT_ASK_ABOVE_MINUTES = 10.0


def parse_grids(specs: list[str], strategies: list[str]) -> dict[str, dict[str, list[float | int]]]:
    """``ma_crossover.fast=5,10,20`` (or ``fast=...`` with one strategy) -> {strategy: {param: values}}."""
    from qframe.research.backtesting.grid import parse_grid_value

    grids: dict[str, dict[str, list[float | int]]] = defaultdict(dict)
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep:
            fail(f"grid {spec!r} is not <strategy>.<param>=<values>, e.g. ma_crossover.fast=5,10,20 or 10:50:10")
        strategy, dot, param = key.strip().rpartition(".")
        if not dot:
            if len(strategies) != 1:
                fail(f"grid {spec!r} must name its strategy (e.g. {strategies[0]}.{key}=...) when several run")
            strategy, param = strategies[0], key.strip()
        if strategy not in strategies:
            fail(f"grid {spec!r} is for {strategy!r}, which is not among --strategy {strategies}")
        grids[strategy][param] = parse_grid_value(values)
    return dict(grids)


def check_choices(strategies: list[str], metric: str, backend: str) -> None:
    """Misspelt names fail at once, with the valid ones, before any data is read."""
    from qframe.research.backend_names import BACKEND_NAMES
    from qframe.research.backtesting.results import SELECTION_METRICS
    from qframe.research.backtesting.strategies import available_strategies

    known = available_strategies()
    for name in strategies:
        if name not in known:
            fail(choice_error("--strategy", name, known))
    if metric not in SELECTION_METRICS:
        fail(choice_error("--metric", metric, SELECTION_METRICS))
    if backend not in BACKEND_NAMES:
        fail(choice_error("--backend", backend, BACKEND_NAMES))


def check_grids(grids: Mapping[str, Mapping[str, Sequence[float | int]]]) -> None:
    """Parameter names and values are checked against the strategies' declarations before any data is read."""
    from qframe.research.backtesting.strategies import StrategyError, get_strategy

    for strategy, grid in grids.items():
        declared = get_strategy(strategy).parameters
        for param, values in grid.items():
            spec = declared.get(param)
            if spec is None:
                fail(choice_error(f"--grid parameter of {strategy}:", param, list(declared)))
            for value in values:
                try:
                    spec.check(param, value)
                except StrategyError as exc:
                    fail(f"--grid {strategy}.{exc}")


def load_market(
    session: Any,
    *,
    dataset: str | None,
    file: Path | None,
    symbols: list[str] | None,
    file_options: dict[str, Any] | None = None,
) -> list[Any]:
    """One MarketData per symbol from a lake dataset (NAME[@VERSION]) or a bars file.

    ``file_options``: how the file is read (``read_options`` of the data commands' flags); a file without a
    symbol column takes the one ``--symbol`` given.
    """
    from qframe.research.backtesting.types import MarketData
    from qframe.research.data_lake.validation import validate_market_data

    if (dataset is None) == (file is None):
        fail("give exactly one data source: --data NAME[@VERSION] (a lake dataset) or --file bars.parquet")
    if file is not None:
        options = file_options or read_options(None, None, None, None, "UTC")
        one = symbols[0] if symbols and len(symbols) == 1 else None
        bars = read_bars(file, options, default_symbol=one)
        report = validate_market_data(bars)
        if not report.ok:
            fail(in_cli_words(report.summary()))
    else:
        assert dataset is not None  # noqa: S101 - narrowed by the check above
        name, _, version = dataset.partition("@")
        meta = session.catalog.get_dataset_sync(name, version or "latest")
        absent = sorted(set(symbols or ()) - set(meta.symbols))
        if absent:
            # Filtering the read by an absent symbol would return nothing and hide which symbols exist.
            fail(f"symbol(s) {absent} not in {meta.name}@{meta.version}; present: {sorted(meta.symbols)}")
        bars = session.storage.read_dataset(meta.name, version=meta.version, symbols=symbols or None)
    present = sorted(bars["symbol"].astype(str).unique())
    chosen = symbols or present
    missing = sorted(set(chosen) - set(present))
    if missing:
        fail(f"symbol(s) {missing} not in the data; present: {present}")
    return [MarketData.from_bars(bars, symbol=symbol, name=symbol) for symbol in chosen]


def summary_table(summary: pd.DataFrame, title: str) -> Table:
    """Best-per-strategy rows: grid figures, or in-sample vs out-of-sample figures for walk-forward."""
    keep = ("strategy", "dataset", "n_combinations")
    figures = [c for c in summary.columns if c.startswith(("best_", "is_mean_", "oos_"))]
    params = [c for c in summary.columns if c in ("best_params", "most_chosen_params")]
    columns = [c for c in keep if c in summary.columns] + [c for c in figures if c not in params] + params
    rows = [[_params_cell(row[c]) if c in params else _cell(row[c]) for c in columns] for _, row in summary.iterrows()]
    # Headers one word per line: the width goes to the values (strategy names, parameters), not to the headers.
    return folding_table([c.replace("_", "\n") for c in columns], rows, title=title)


def summary_records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The summary's rows for ``--output json|csv``: parameters by the names a user types, whole numbers as int."""
    from qframe.research.backtesting.results import PARAM_PREFIX

    records = []
    for record in summary.to_dict(orient="records"):
        records.append(
            {
                str(key): plain_params(value, PARAM_PREFIX) if key in ("best_params", "most_chosen_params") else value
                for key, value in record.items()
            }
        )
    return records


def _params_cell(value: object) -> str:
    """One ``name=value`` per line, so a narrow column wraps between parameters, never inside a value."""
    from qframe.research.backtesting.results import PARAM_PREFIX

    if isinstance(value, dict):
        return "\n".join(f"{key}={_cell(number)}" for key, number in plain_params(value, PARAM_PREFIX).items())
    return _cell(value)


def _cell(value: object) -> str:
    from qframe.research.backtesting.results import PARAM_PREFIX

    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e9 else f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k.removeprefix(PARAM_PREFIX)}={_cell(v)}" for k, v in value.items())
    if isinstance(value, str) and value.startswith("{"):
        return value.replace(PARAM_PREFIX, "").replace("'", "")
    return str(value)


def backtest(
    ctx: typer.Context,
    strategy: Annotated[list[str], typer.Option("--strategy", "-s", help="registry name, repeatable")],
    grid: Annotated[
        list[str] | None, typer.Option("--grid", "-g", help="strategy.param=5,10,20 or =10:50:10, repeatable")
    ] = None,
    # "\\[" keeps rich markup from eating "[@VERSION]" in --help.
    data: Annotated[str | None, typer.Option("--data", help="lake dataset NAME\\[@VERSION]")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="or a .csv/.parquet file of bars")] = None,
    symbol: Annotated[
        list[str] | None,
        typer.Option("--symbol", help="only these symbols, repeatable; names the instrument of a file without one"),
    ] = None,
    column_map: ColumnMap = None,
    timestamp_unit: TimestampUnitOption = None,
    sep: Separator = None,
    source_tz: SourceTz = "UTC",
    backend: Annotated[str, typer.Option(help="auto, sequential, dask or ray")] = "auto",
    address: Annotated[str | None, typer.Option(help="tcp://scheduler:8786 or ray://head:10001")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="local workers when no address")] = None,
    splits: Annotated[int, typer.Option(min=0, help="walk-forward splits (0 = whole series)")] = 0,
    train_size: Annotated[int | None, typer.Option(min=2, help="bars per train window")] = None,
    test_size: Annotated[int | None, typer.Option(min=2, help="bars per test window")] = None,
    purge: Annotated[int, typer.Option(min=0, help="bars between train and test")] = 0,
    commission: Annotated[float, typer.Option(min=0.0, help="fraction of traded notional")] = 0.0005,
    slippage: Annotated[float, typer.Option(min=0.0, help="fraction of traded notional")] = 0.0005,
    capital: Annotated[float, typer.Option(min=1.0, help="initial capital")] = 100_000.0,
    bars_per_year: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            help="annualisation (252 daily exchange bars, 8760 hourly 24/7); default: inferred from the timestamps",
        ),
    ] = None,
    metric: Annotated[str, typer.Option(help="selection metric")] = "sharpe",
    out: Annotated[Path, typer.Option(help="results, summary and tear sheets go here")] = Path("backtest-results"),
    track: Annotated[bool, typer.Option(help="log the sweep to MLflow")] = True,
    tracking_uri: Annotated[str | None, typer.Option(envvar="MLFLOW_TRACKING_URI", help="MLflow URI")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment")] = "backtests",
    checkpoint: Annotated[bool, typer.Option(help="checkpoint finished chunks in the lake (resume)")] = True,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="start without asking, whatever the estimate")] = False,
    ask_above_minutes: Annotated[
        float, typer.Option(min=0.0, help="ask before starting a sweep estimated to run longer than this")
    ] = DEFAULT_ASK_ABOVE_MINUTES,
    workdir: Workdir = None,
    lake: LakeUrl = None,
    catalog: CatalogUrl = None,
) -> None:
    """Run a parameter-grid sweep (optionally walk-forward) of one or more strategies on Dask, Ray or locally.

    Before starting it prints the tasks, an estimated run time (calibrated on the data) and peak memory, and
    asks above --ask-above-minutes (on a terminal; elsewhere it needs --yes).
    """
    from qframe.research.backtesting.types import CostModel
    from qframe.research.integration_layer import create_research_integration
    from qframe.research.workflows import SweepOptions, run_research_sweep

    with plain_errors():
        check_choices(strategy, metric, backend)
        grids = parse_grids(grid or [], strategy)
        check_grids(grids)
        file_options = read_options(column_map, None, timestamp_unit, sep, source_tz)
        if data is not None and (column_map or timestamp_unit or sep or source_tz != "UTC"):
            fail("--column-map, --timestamp-unit, --sep and --source-tz read a --file; a --data dataset needs none")
        settings = settings_from(workdir, lake, catalog, mlflow_tracking_uri=tracking_uri)
        with create_research_integration(settings=settings) as session:
            # An unreachable tracker is known in a second; reading the data can take many.
            tracker = _tracker(settings.resolved_tracking_uri, experiment, settings.workdir) if track else None
            market = load_market(session, dataset=data, file=file, symbols=symbol, file_options=file_options)
            options = SweepOptions(
                compute_backend=backend,
                address=address or settings.compute_address,
                max_workers=workers,
                n_splits=splits,
                train_size=train_size,
                test_size=test_size,
                purge=purge,
                costs=CostModel(commission=commission, slippage=slippage),
                initial_capital=capital,
                bars_per_year=bars_per_year,
                selection_metric=metric,
                progress=not quiet_requested(ctx),
            )
            storage = session.storage if checkpoint else None
            confirm_start(
                estimate(strategy, market, grids, options, storage),
                ask_above_minutes,
                yes=yes,
                quiet=quiet_requested(ctx),
            )
            report = run_research_sweep(
                strategy,
                market,
                grids,
                out_dir=out,
                options=options,
                tracker=tracker,
                sweep_name="-".join(strategy),
                checkpoint_storage=storage,
                source=data or (file.name if file is not None else None),  # named in the tear sheets' titles
            )
        print_report(report, tracking_uri=settings.resolved_tracking_uri if track else None)


def estimate(
    strategies: list[str],
    market: list[Any],
    grids: Mapping[str, Mapping[str, Sequence[float | int]]],
    options: Any,
    storage: Any,
) -> Any:
    """The engine's own plan and calibration for this sweep (the backend is not started)."""
    from qframe.research.backtesting.engine import DistributedBacktestEngine

    engine = DistributedBacktestEngine(
        compute_backend=options.compute_backend,
        address=options.address,
        max_workers=options.max_workers,
        checkpoint_storage=storage,
        progress=False,
    )
    return engine.estimate_backtest(
        strategies,
        market,
        grids,
        n_splits=options.n_splits,
        initial_capital=options.initial_capital,
        costs=options.costs,
        bars_per_year=options.bars_per_year,
        train_size=options.train_size,
        test_size=options.test_size,
        purge=options.purge,
    )


def confirm_start(sweep: Any, ask_above_minutes: float, *, yes: bool, quiet: bool = False) -> None:
    """Prints the estimate (stderr: stdout keeps the results); a long sweep starts only when confirmed.

    ``qframe -q`` prints it only when it is the reason the sweep needs an answer or does not start.
    """
    from qframe.research.backtesting.estimate import format_duration

    needs_answer = not yes and sweep.seconds > ask_above_minutes * 60
    if needs_answer or not quiet:
        for line in sweep.lines():
            err_console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not needs_answer:
        return
    long = f"estimated {format_duration(sweep.seconds)}, above --ask-above-minutes {ask_above_minutes:g}"
    if not sys.stdin.isatty():
        fail(f"sweep not started: {long}; pass --yes to start it anyway, or shrink the grid / use more workers")
    if not typer.confirm(f"{long}. Start it?", default=False, err=True):
        fail("sweep not started (answered no)", code=EXIT_FAILED)


def quiet_requested(ctx: typer.Context | None) -> bool:
    """``qframe -q``: no progress bars either."""
    return bool(ctx is not None and isinstance(ctx.obj, dict) and ctx.obj.get("quiet"))


def _tracker(uri: str, experiment: str, workdir: Path) -> Any:
    from qframe.research.tracking.base import TrackingError
    from qframe.research.tracking.mlflow_tracking import DATABASE_SCHEMES, MlflowTracker

    # A database store (other than SQLite, which puts them next to its file) keeps artifacts under the workdir;
    # MLflow's own default would be ./mlruns of whatever directory the command runs in.
    database = uri.split(":", 1)[0].split("+", 1)[0] in DATABASE_SCHEMES and not uri.startswith("sqlite")
    location = (workdir.resolve() / "mlartifacts").as_uri() if database else None
    try:
        return MlflowTracker(uri, experiment, artifact_location=location)
    except TrackingError as exc:
        # The tracker's own fix names the Python/env spellings; here the user typed flags.
        fail(f"{exc} (command line: --tracking-uri URL or MLFLOW_TRACKING_URI; --no-track runs without MLflow)", code=1)


def print_report(report: Any, *, tracking_uri: str | None) -> None:
    results = report.results.frame
    console.print(summary_table(report.summary, f"{len(results):,} rows on {report.backend}"))
    for line in annualisation_lines(report.results.frequencies):
        console.print(line, highlight=False)
    console.print(f"results      {report.results_path}")
    console.print(f"summary      {report.summary_path}")
    for strategy, (png, html) in report.tear_sheets.items():
        console.print(f"tear sheet   {strategy}: {html} (and {png.name})")
    if tracking_uri:
        from qframe.research.redaction import redact

        shown = redact(tracking_uri)
        console.print(f"MLflow       {shown} (runs: {', '.join(report.tracking_run_ids.values())})")
        if tracking_uri.startswith("sqlite:"):
            console.print(f"             look: mlflow ui --backend-store-uri {shown}")


def annualisation_lines(frequencies: Mapping[str, Any]) -> list[str]:
    """``annualised   AAA, BBB: 1h bars, 24/7 calendar: 8,760 bars/year (...)``, one line per distinct value."""
    by_description: dict[str, list[str]] = defaultdict(list)
    for dataset, frequency in sorted(frequencies.items()):
        by_description[frequency.describe()].append(dataset)
    hint = "" if all(f.source == "given" for f in frequencies.values()) else "; --bars-per-year overrides"
    return [f"annualised   {', '.join(names)}: {text}{hint}" for text, names in by_description.items()]


def report(
    results_dir: Annotated[Path, typer.Argument(help="the --out directory of `qframe backtest`")],
    metric: Annotated[str, typer.Option(help="rank by this metric")] = "sharpe",
    output: Annotated[OutputFormat, typer.Option(help="table, or json/csv on stdout for other tools")] = (
        OutputFormat.table
    ),
) -> None:
    """Summary table of a finished sweep (best parameters per strategy; out-of-sample figures for walk-forward)."""
    import pandas as pd
    from qframe.research.backtesting.results import SELECTION_METRICS, get_performance_summary

    with plain_errors():
        if metric not in SELECTION_METRICS:
            fail(choice_error("--metric", metric, SELECTION_METRICS))
        path = results_dir / "results.parquet"
        if not path.is_file():
            fail(f"{path} does not exist; pass the --out directory of a finished `qframe backtest`")
        summary = get_performance_summary(pd.read_parquet(path), metric=metric)
        if output is not OutputFormat.table:
            # Plain write: rich would wrap long lines and interpret brackets in the data.
            sys.stdout.write(render_records(summary_records(summary), output).rstrip("\n") + "\n")
            return
        console.print(summary_table(summary, f"{results_dir} by {metric}"))
        sheets = sorted((results_dir / "tear_sheets").glob("*.html"))
        for sheet in sheets:
            console.print(f"tear sheet   {sheet}")
