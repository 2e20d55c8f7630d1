"""`qframe demo`: the researcher's day in one command, on an embedded default that needs no cluster.

Ingest deterministic synthetic bars into the lake, compute and store the built-in features, run a
walk-forward grid sweep of three strategies on a local Dask cluster, log it to a local MLflow store,
write tear sheets, then print the summary and where everything is. Rerunning reuses the stored data
versions (versions are immutable) and the sweep checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from qframe.research.cli._common import console, plain_errors, settings_from

DEMO_SYMBOLS = ("AAA", "BBB", "CCC")
DEMO_BARS = "bars.demo-1h"
DEMO_VERSION = "v1"
HOURS_PER_YEAR = 24 * 365.0
DEMO_GRIDS: dict[str, dict[str, list[float | int]]] = {
    "ma_crossover": {"fast": [5, 10, 20, 30, 50], "slow": [60, 100, 150, 200, 300]},
    "adaptive_mean_reversion": {
        "lookback_short": [10, 20, 30],
        "lookback_long": [50, 100, 200],
        "z_entry_base": [1.0, 1.5, 2.0],
    },
    "momentum_breakout": {"lookback": [24, 48, 96, 168], "exit_lookback": [12, 24, 48]},
}


def demo(
    # The default work directory of every session (settings.DEFAULT_WORKDIR, spelt out so that --help does not
    # import pydantic): a notebook's create_research_integration() and the other commands find the demo's data.
    workdir: Annotated[
        Path,
        typer.Option(envvar="QFRAME_WORKDIR", help="lake, catalog, MLflow store and outputs go here"),
    ] = Path(".qframe"),
    periods: Annotated[int, typer.Option(min=500, help="hourly bars per symbol")] = 8760,
    backend: Annotated[str, typer.Option(help="dask (default), ray, sequential or auto")] = "dask",
    workers: Annotated[int, typer.Option(min=1, help="local workers")] = 2,
    splits: Annotated[int, typer.Option(min=1, help="walk-forward splits")] = 4,
    seed: Annotated[int, typer.Option(min=0, help="synthetic data seed")] = 7,
) -> None:
    """Data -> features -> walk-forward sweep on local Dask -> MLflow -> tear sheets -> summary."""
    from qframe.research.backtesting.types import MarketData
    from qframe.research.cli.backtest import print_report
    from qframe.research.data_lake.catalog import DatasetNotRegistered, DatasetRef
    from qframe.research.data_lake.ingestion import DataIngestionPipeline
    from qframe.research.features import compute_features
    from qframe.research.integration_layer import create_research_integration
    from qframe.research.tracking.mlflow_tracking import MlflowTracker
    from qframe.research.workflows import SweepOptions, run_research_sweep

    workdir = workdir.resolve()
    # The demo is self-contained: its lake, catalog and MLflow store live in the workdir, whatever the env says.
    settings = settings_from(
        workdir,
        workdir.joinpath("lake").as_uri(),
        f"sqlite:///{workdir / 'catalog.db'}",
        mlflow_tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
    )
    with plain_errors(), create_research_integration(settings=settings) as session:
        console.rule("1. market data")
        try:
            bars_meta = session.catalog.get_dataset_sync(DEMO_BARS, DEMO_VERSION)
            console.print(f"reusing {bars_meta.name}@{bars_meta.version} ({bars_meta.row_count:,} bars)")
        except DatasetNotRegistered:
            stored = DataIngestionPipeline(session.storage, session.catalog).ingest_market_data_sync(
                "synthetic",
                DEMO_SYMBOLS,
                "1h",
                "2024-01-01",
                name=DEMO_BARS,
                version=DEMO_VERSION,
                seed=seed,
                periods=periods,
            )
            bars_meta = session.catalog.get_dataset_sync(stored.name, stored.version)
            console.print(f"ingested {bars_meta.name}@{bars_meta.version}: {bars_meta.row_count:,} validated bars")
        bars = session.storage.read_dataset(bars_meta.name, version=bars_meta.version)

        console.rule("2. features")
        if DEMO_VERSION in session.feature_store.list_versions("technical"):
            console.print(f"reusing features.technical@{DEMO_VERSION}")
        else:
            features = compute_features(bars, bars_per_year=HOURS_PER_YEAR)
            session.feature_store.store_features_sync(
                "technical",
                features,
                DEMO_VERSION,
                description="built-in feature set of the demo bars",
                derived_from=[DatasetRef(bars_meta.name, bars_meta.version)],
            )
            console.print(
                f"stored features.technical@{DEMO_VERSION}: {len(features):,} rows, {features.shape[1] - 2} features"
            )

        console.rule(f"3. walk-forward sweep on {backend} ({workers} workers)")
        market = [MarketData.from_bars(bars, symbol=symbol, name=symbol) for symbol in bars_meta.symbols]
        report = run_research_sweep(
            list(DEMO_GRIDS),
            market,
            DEMO_GRIDS,
            out_dir=workdir / "results",
            options=SweepOptions(
                compute_backend=backend,
                max_workers=workers,
                n_splits=splits,
                purge=24,  # annualisation inferred from the bars (hourly, 24/7) and printed with the results
            ),
            tracker=MlflowTracker(settings.resolved_tracking_uri, "qframe-demo"),
            sweep_name="demo-walk-forward",
            checkpoint_storage=session.storage,
            source=f"{bars_meta.name}@{bars_meta.version}",  # named in the tear sheets' titles
        )

        console.rule("4. results")
        print_report(report, tracking_uri=settings.resolved_tracking_uri)
        console.print(f"lake         {settings.resolved_lake_url}")
        console.print(f"catalog      {settings.resolved_catalog_url}  (qframe data list --workdir {workdir})")
