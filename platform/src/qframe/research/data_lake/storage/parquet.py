"""How the lake encodes a frame as Parquet, and the empty frame a read that matches no file returns."""

from __future__ import annotations

import base64
from typing import Final

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from qframe.research.data_lake.storage_layout import StorageMetadata

# Rows per Parquet row group: small enough that a day-range read inside a monthly file of minute bars
# skips most of the file by statistics, large enough to keep per-group overhead negligible.
ROW_GROUP_ROWS: Final = 16_384
PARQUET_COMPRESSION: Final = "zstd"


def arrow_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as Arrow, with tz-aware columns converted without pandas' deprecated ``Series.values``.

    pyarrow 25 reads ``Series.values`` of tz-aware columns, which pandas 3.1 deprecates with a warning
    on every write; converting those columns as UTC wall times and casting them back to their zone
    gives the same Arrow type and values.
    """
    zoned = {c: frame[c].dtype for c in frame.columns if isinstance(frame[c].dtype, pd.DatetimeTZDtype)}
    naive = frame.assign(**{c: frame[c].dt.tz_convert(None) for c in zoned}) if zoned else frame
    table = pa.Table.from_pandas(naive, preserve_index=False)
    for column, dtype in zoned.items():
        index = table.schema.get_field_index(column)
        arrow_type = pa.timestamp(dtype.unit, tz=str(dtype.tz))
        table = table.set_column(index, pa.field(column, arrow_type), table.column(index).cast(arrow_type))
    return table


def empty_schema(meta: StorageMetadata) -> pa.Schema:
    """The version's Arrow schema (with pandas metadata) for a read that matches no file."""
    if meta.arrow_schema:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(meta.arrow_schema)))
    fields = []
    for column, type_name in meta.schema.items():
        try:
            arrow_type = pa.type_for_alias(type_name)
        except (ValueError, KeyError):
            arrow_type = pa.timestamp("ns", tz="UTC") if type_name.startswith("timestamp") else pa.string()
        fields.append(pa.field(column, arrow_type))
    return pa.schema(fields)


def parquet_bytes(table: pa.Table) -> bytes:
    """One Parquet file in memory; deterministic for equal tables (same pyarrow version)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=PARQUET_COMPRESSION, row_group_size=ROW_GROUP_ROWS)
    data: bytes = sink.getvalue().to_pybytes()
    return data
