"""The `qframe` command line: `qframe data ...`, `qframe backtest`, `qframe report`, `qframe demo`.

Every command reads the same settings as notebooks (QFRAME_* variables, or options), prints errors
in plain words with exit code 2 for bad input, and imports the heavy libraries only when it runs.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TextIO, cast

import structlog
import typer
from qframe.research.cli import backtest, data, demo, strategies, sweeps
from qframe.research.cli._common import CatalogUrl, LakeUrl, Workdir, console, plain_errors, settings_from
from qframe.research.redaction import redact_event

app = typer.Typer(
    name="qframe",
    help="QFrame research platform: data lake, backtests on Dask/Ray, reports, and a demo.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data.app, name="data")
app.add_typer(sweeps.app, name="sweeps")
app.command("backtest")(backtest.backtest)
app.command("report")(backtest.report)
app.command("demo")(demo.demo)
app.command("strategies")(strategies.strategies)


@app.callback()
def main(
    ctx: typer.Context,
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="-v: info logs too, -vv: debug logs"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only errors in the log, no progress bars"),
) -> None:
    """QFrame research platform: data lake, backtests on Dask/Ray, reports, and a demo."""
    configure_logging(log_level(verbose, quiet=quiet))
    ctx.obj = {"quiet": quiet}


def log_level(verbose: int, *, quiet: bool = False) -> int:
    """Warnings by default: a command's result goes to stdout and its progress would bury it on stderr."""
    if quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


class _CurrentStderr:
    """Writes to whatever sys.stderr is at the time (test runners swap and close it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: int) -> None:
    """Logs go to stderr so that stdout holds only what a command prints as its result."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            # Tracebacks become text first, so the redaction sees them too.
            structlog.processors.format_exc_info,
            redact_event,
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )


@app.command()
def status(workdir: Workdir = None, lake: LakeUrl = None, catalog: CatalogUrl = None) -> None:
    """Where the lake, catalog and MLflow are, which strategies and compute backends are available (changes nothing)."""
    from qframe.research.cli.status import probe
    from qframe.research.redaction import redact

    with plain_errors():
        console.print_json(redact(json.dumps(probe(settings_from(workdir, lake, catalog)))))
