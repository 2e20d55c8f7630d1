"""What every `qframe` command shares: settings options, plain-word errors, the rich console."""

from __future__ import annotations

import difflib
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

# Piped or captured output (CI logs, `| tee`) keeps whole table rows instead of rich's 80-column default.
_WIDE = None if sys.stdout.isatty() else 160
console = Console(width=_WIDE)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

# Exit codes: 1 = the work failed, 2 = the input was wrong (nothing was changed).
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

Workdir = Annotated[
    Path | None,
    typer.Option("--workdir", envvar="QFRAME_WORKDIR", help="laptop defaults (lake, catalog, MLflow) live here"),
]
LakeUrl = Annotated[
    str | None,
    typer.Option("--lake", envvar="QFRAME_LAKE_URL", help="file:///path, s3://bucket/prefix or memory://"),
]
CatalogUrl = Annotated[
    str | None,
    typer.Option("--catalog", envvar="QFRAME_CATALOG_URL", help="sqlite:///file.db or postgresql+psycopg://..."),
]


def fail(message: str, *, code: int = EXIT_BAD_INPUT) -> NoReturn:
    from qframe.research.redaction import redact

    # soft_wrap: one error is one line, whatever the terminal width (logs, greps).
    err_console.print(f"[bold red]error:[/] {escape(redact(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def choice_error(what: str, given: str, valid: Sequence[str]) -> str:
    """``unknown --strategy 'ma_crosover'; did you mean 'ma_crossover'? choose from: ...``."""
    close = difflib.get_close_matches(given, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {given!r}{hint} choose from: {', '.join(valid)}"


def _bad_input_types() -> tuple[type[BaseException], ...]:
    # Imported here so `qframe --help` does not load pandas, SQLAlchemy and numba.
    from qframe.research.data_lake.catalog import CatalogError
    from qframe.research.data_lake.storage import StorageError

    return (ValueError, LookupError, CatalogError, StorageError, FileNotFoundError)


def _unavailable_types() -> tuple[type[BaseException], ...]:
    """A service that is down: exit 1 (the work failed, the input may be fine; rerunning is safe)."""
    from qframe.research.data_lake.catalog import CatalogUnavailable
    from qframe.research.tracking.base import TrackingError

    return (CatalogUnavailable, TrackingError)


def _quiet_interrupt(signum: int, frame: Any) -> None:
    # Ctrl-C tears down a local Dask cluster whose scheduler runs in this process: while its comms
    # close, distributed logs CRITICAL "Closed comm" tracebacks and asyncio "Task exception was never
    # retrieved" to stderr, before the one line below (1 run in 3 on the CI machine). The command is
    # ending, so nothing it logs from here on is worth a user's screen.
    logging.disable(logging.CRITICAL)
    raise KeyboardInterrupt


@contextmanager
def _interrupt_without_log_noise() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGINT, _quiet_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def plain_errors() -> Iterator[None]:
    """Known errors become one readable line and an exit code instead of a traceback.

    Anything else still shows its traceback (a bug to report), but through the redaction, like every line here.
    """
    try:
        with _interrupt_without_log_noise():
            yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        fail("interrupted; finished work is kept (rerun the same command to resume)", code=130)
    except Exception as exc:
        if isinstance(exc, _unavailable_types()):
            fail(str(exc), code=EXIT_FAILED)
        if isinstance(exc, _bad_input_types()):
            fail(str(exc))
        from qframe.research.redaction import redact

        err_console.print(escape(redact(traceback.format_exc())), highlight=False)
        fail(f"unexpected {type(exc).__name__} (traceback above): {exc}", code=EXIT_FAILED)


@contextmanager
def research_session(workdir: Path | None, lake: str | None, catalog: str | None, **more: Any) -> Iterator[Any]:
    """The command's lake, catalog and feature store, with plain-word errors around the whole command body.

    ``more`` are further settings fields given as options (e.g. ``s3_endpoint_url``); None keeps the env's.
    """
    from qframe.research.integration_layer import create_research_integration

    with plain_errors(), create_research_integration(settings=settings_from(workdir, lake, catalog, **more)) as session:
        yield session


def settings_from(workdir: Path | None, lake: str | None, catalog: str | None, **more: Any) -> Any:
    from qframe.research.redaction import remember_secrets_in_url
    from qframe.research.settings import ResearchSettings

    settings = ResearchSettings.from_env(workdir=workdir, lake_url=lake, catalog_url=catalog, **more)
    # Every URL's credentials are masked wherever they turn up later, however a library re-renders the URL.
    for url in (settings.lake_url, settings.catalog_url, settings.mlflow_tracking_uri, settings.s3_endpoint_url):
        remember_secrets_in_url(url)
    return settings
