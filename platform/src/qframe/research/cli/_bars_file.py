"""How a bars file is read, shared by `qframe data ingest|validate` and `qframe backtest --file`.

One set of options and one reader, so a file that validates is read the same way by every command.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from qframe.research.cli._common import fail

if TYPE_CHECKING:
    import pandas as pd

ColumnMap = Annotated[
    list[str] | None,
    typer.Option("--column-map", help="YOURS=lake column, repeatable, e.g. --column-map Date=timestamp"),
]
FileSymbol = Annotated[str | None, typer.Option("--symbol", help="symbol of a single-instrument file")]
TimestampUnitOption = Annotated[
    str | None, typer.Option("--timestamp-unit", help="epoch numbers count s, ms, us or ns")
]
Separator = Annotated[str | None, typer.Option("--sep", help="CSV field separator (default ',', '\\t' for .tsv)")]
SourceTz = Annotated[str, typer.Option("--source-tz", help="zone of timestamps written without one")]

# Python spellings in library messages -> the flags of these commands.
_CLI_WORDS: tuple[tuple[str, str], ...] = (
    ("column_map={'<your name>': '<lake name>'}", "--column-map '<your name>=<lake name>'"),
    (
        "DataIngestionPipeline(...).ingest_file_sync(..., column_map={'Date': 'timestamp'})",
        "--column-map Date=timestamp",
    ),
    ("DataIngestionPipeline(...).ingest_file_sync(..., source_tz='<zone>')", "--source-tz <zone>"),
    ("pass symbol='<ticker>'", "pass --symbol <ticker>"),
    ("symbol= was given", "--symbol was given"),
    ("timestamp_unit='s', 'ms', 'us' or 'ns'", "--timestamp-unit s, ms, us or ns"),
    ("timestamp_unit=", "--timestamp-unit"),
    ("pass quarantine=True to DataIngestionPipeline", "pass --quarantine"),
    ("overwrite=True", "--overwrite"),
)


def in_cli_words(message: str) -> str:
    for python, flag in _CLI_WORDS:
        message = message.replace(python, flag)
    return message


def read_options(
    column_map: list[str] | None, symbol: str | None, timestamp_unit: str | None, sep: str | None, source_tz: str
) -> dict[str, Any]:
    """The flags as keyword arguments of ``normalise_bars`` plus ``csv_options`` for ``read_bars_file``."""
    mapping: dict[str, str] = {}
    for item in column_map or []:
        yours, eq, ours = item.partition("=")
        if not eq or not yours.strip() or not ours.strip():
            fail(f"--column-map {item!r} is not YOURS=lake, e.g. --column-map Date=timestamp")
        mapping[yours.strip()] = ours.strip()
    if timestamp_unit is not None and timestamp_unit not in ("s", "ms", "us", "ns"):
        fail(f"--timestamp-unit {timestamp_unit!r} is not one of s, ms, us, ns")
    return {
        "column_map": mapping or None,
        "symbol": symbol,
        "timestamp_unit": timestamp_unit,
        "source_tz": source_tz,
        "csv_options": {"sep": sep.replace("\\t", "\t")} if sep else None,
    }


def read_bars(path: Path, options: dict[str, Any], *, default_symbol: str | None = None) -> pd.DataFrame:
    """The file in the lake's bar layout (not yet validated); a reading error names the flags that fix it.

    ``default_symbol`` names the instrument of a file that has no symbol column (and is ignored otherwise).
    """
    from qframe.research.data_lake.ingestion import _match_columns, normalise_bars, read_bars_file

    normalise = dict(options)
    try:
        frame = read_bars_file(path, csv_options=normalise.pop("csv_options"))
        if default_symbol is not None and normalise["symbol"] is None:
            mapped = frame.rename(columns=normalise["column_map"] or {})
            if "symbol" not in _match_columns(mapped).columns:
                normalise["symbol"] = default_symbol
        return normalise_bars(frame, **normalise)
    except ValueError as exc:
        fail(in_cli_words(str(exc)))
