"""Data lake benchmark: write/full-read throughput to local disk and to S3 API servers, and partition pruning.

    .venv/bin/python -m benchmarks.bench_data                  # 10M rows, 50 symbols, local + MinIO
    .venv/bin/python -m benchmarks.bench_data --rows 1000000 --symbols 10 --moto

Bars are 1-minute OHLCV generated with numpy (deterministic, valid: high >= max(open, close) >= min(open,
close) >= low > 0). 10M rows over 50 symbols is 200k bars per symbol, about 4.6 months, so 5 monthly
partitions per symbol. The pruned read asks for one symbol and one month and counts the files the
storage's filesystem opens, next to a full read.

Reads verify every file's CRC-32 (recorded in the manifest) by default; the full read is timed that
way, with ``verify="sha256"`` (audits) and with ``verify=False`` (the explicit opt-out), alternating,
best of ``--read-repeats``, and the cost of verification is printed as a percentage of unverified rows/s.

The S3 figures come from a real MinIO server (and, with ``--moto``, the moto S3 API server) started on
127.0.0.1 by the test harness, so they measure the S3 protocol path on loopback, not a network.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import structlog
from qframe.research.data_lake.storage import DataLakeStorage, LocalFileStorage, MinIOStorage, S3Storage
from rich.console import Console
from rich.table import Table

DATASET = "bars.bench-1m"
READ_OPERATIONS: dict[bool | str, str] = {
    True: "full read (verified)",
    "sha256": "full read (verify='sha256')",
    False: "full read (verify=False)",
}
MB = 1024 * 1024


def generate_bars(rows: int, symbols: int, *, seed: int = 0, start: str = "2024-01-01") -> pd.DataFrame:
    """``rows`` 1-minute bars split evenly over ``symbols`` (GBM closes), vectorised and deterministic."""
    if symbols < 1 or rows < symbols:
        raise SystemExit(f"--rows ({rows}) must be >= --symbols ({symbols}) >= 1")
    per_symbol = rows // symbols
    rng = np.random.default_rng(seed)
    log_returns = rng.normal(0.0, 0.0008, size=(symbols, per_symbol))
    close = 100.0 * np.exp(np.cumsum(log_returns, axis=1))
    open_ = np.concatenate([np.full((symbols, 1), 100.0), close[:, :-1]], axis=1)
    wick = np.abs(rng.normal(0.0, 0.0004, size=(2, symbols, per_symbol)))
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - wick[1])
    volume = rng.lognormal(3.0, 1.0, size=(symbols, per_symbol))
    start_ns = pd.Timestamp(start, tz="UTC").value
    minute_ns = 60 * 1_000_000_000
    stamps = (start_ns + np.arange(per_symbol, dtype=np.int64) * minute_ns).astype("datetime64[ns]")
    names = np.array([f"SYM{i:03d}/USD" for i in range(symbols)], dtype=object)
    return pd.DataFrame(
        {
            "timestamp": pd.DatetimeIndex(np.tile(stamps, symbols)).tz_localize("UTC"),
            "symbol": pd.array(np.repeat(names, per_symbol), dtype="str"),
            "open": open_.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
            "volume": volume.ravel(),
        }
    )


@dataclass(frozen=True)
class Measurement:
    backend: str
    operation: str
    seconds: float
    rows: int
    lake_bytes: int
    memory_bytes: int
    files_opened: int | None
    files_total: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    @property
    def lake_mb_per_s(self) -> float:
        return self.lake_bytes / MB / self.seconds if self.seconds > 0 else float("inf")

    @property
    def memory_mb_per_s(self) -> float:
        return self.memory_bytes / MB / self.seconds if self.seconds > 0 else float("inf")


@contextmanager
def counting_opens(storage: DataLakeStorage) -> Iterator[list[str]]:
    """Records the data files the storage's filesystem opens while the block runs (not the manifest)."""
    opened: list[str] = []
    fs = storage.fs
    real_open, real_cat = fs.open, fs.cat_file

    def spy(path: str, *args: Any, **kwargs: Any) -> Any:
        if str(path).endswith(".parquet"):
            opened.append(str(path))
        return real_open(path, *args, **kwargs)

    def spy_cat(path: str, *args: Any, **kwargs: Any) -> Any:  # verified reads fetch whole files
        if str(path).endswith(".parquet"):
            opened.append(str(path))
        return real_cat(path, *args, **kwargs)

    fs.open = spy
    fs.cat_file = spy_cat
    try:
        yield opened
    finally:
        del fs.open  # back to the class methods
        del fs.cat_file


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = func()
    return time.perf_counter() - started, result


def bench_backend(
    label: str, storage: DataLakeStorage, bars: pd.DataFrame, console: Console, *, read_repeats: int = 3
) -> list[Measurement]:
    memory_bytes = int(bars.memory_usage(deep=True).sum())
    console.log(f"[{label}] writing {len(bars):,} rows to {storage.url}")
    write_s, meta = timed(lambda: storage.write_dataset(DATASET, bars, version=f"run-{uuid.uuid4().hex[:8]}"))
    total_files = len(meta.files)
    results = [Measurement(label, "write", write_s, meta.row_count, meta.size_bytes, memory_bytes, None, total_files)]

    # Alternating verified and unverified reads, best of N each: the machine is shared, so the minimum is
    # the figure least disturbed by other work.
    modes: tuple[bool | Literal["sha256"], ...] = (True, "sha256", False)
    best: dict[bool | str, float] = {}
    opened_counts: dict[bool | str, int] = {}
    for repeat in range(read_repeats):
        for verify in modes:
            console.log(f"[{label}] full read, verify={verify} ({repeat + 1}/{read_repeats})")
            with counting_opens(storage) as opened:
                read_s, full = timed(partial(storage.read_dataset, DATASET, version=meta.version, verify=verify))
            if len(full) != len(bars):
                raise SystemExit(f"[{label}] full read returned {len(full)} rows, wrote {len(bars)}")
            del full
            best[verify] = min(best.get(verify, float("inf")), read_s)
            opened_counts[verify] = len(set(opened))
    for verify in modes:
        operation = READ_OPERATIONS[verify]
        results.append(
            Measurement(
                label,
                operation,
                best[verify],
                len(bars),
                meta.size_bytes,
                memory_bytes,
                opened_counts[verify],
                total_files,
            )
        )

    symbol = meta.symbols[len(meta.symbols) // 2]
    month_start = meta.start.normalize().replace(day=1) + pd.offsets.MonthBegin(1)
    month_end = month_start + pd.offsets.MonthBegin(1)
    console.log(f"[{label}] one symbol ({symbol}), one month ({month_start:%Y-%m})")
    with counting_opens(storage) as opened:
        pruned_s, part = timed(
            lambda: storage.read_dataset(
                DATASET, version=meta.version, symbols=[symbol], start=month_start, end=month_end
            )
        )
    expected = int(
        ((bars["symbol"] == symbol) & (bars["timestamp"] >= month_start) & (bars["timestamp"] < month_end)).sum()
    )
    if len(part) != expected:
        raise SystemExit(f"[{label}] pruned read returned {len(part)} rows, expected {expected}")
    part_bytes = sum(
        entry.size_bytes
        for entry in meta.file_entries
        if entry.symbol == symbol and entry.overlaps(month_start, month_end)
    )
    part_memory = int(part.memory_usage(deep=True).sum())
    operation = f"read 1 symbol x 1 month ({month_start:%Y-%m})"
    results.append(
        Measurement(label, operation, pruned_s, len(part), part_bytes, part_memory, len(set(opened)), total_files)
    )
    storage.delete_version(DATASET, meta.version)
    return results


def verification_costs(measurements: Sequence[Measurement]) -> list[str]:
    """One line per backend: verified vs unverified full-read rows/s and the cost in % of unverified."""
    by_key = {(m.backend, m.operation): m for m in measurements}
    lines = []
    for backend in dict.fromkeys(m.backend for m in measurements):
        unverified = by_key.get((backend, READ_OPERATIONS[False]))
        for mode, label in ((True, "verified (CRC-32, default)"), ("sha256", "verify='sha256'")):
            verified = by_key.get((backend, READ_OPERATIONS[mode]))
            if verified is None or unverified is None:
                continue
            cost = (1.0 - verified.rows_per_s / unverified.rows_per_s) * 100.0
            lines.append(
                f"read verification cost, {backend}, {label}: {verified.rows_per_s:,.0f} rows/s vs verify=False "
                f"{unverified.rows_per_s:,.0f} rows/s: {cost:+.1f} %" + (" (goal < 10 %)" if mode is True else "")
            )
    return lines


def render(measurements: Sequence[Measurement], *, rows: int, symbols: int, console: Console) -> None:
    table = Table(title=f"Data lake: {rows:,} 1-minute OHLCV rows over {symbols} symbols (shared 2-core machine)")
    columns = ("backend", "operation", "rows", "seconds", "rows/s", "lake MB/s", "in-memory MB/s", "files opened")
    for column in columns:
        table.add_column(column, justify="left" if column in {"backend", "operation"} else "right", no_wrap=True)
    for m in measurements:
        table.add_row(
            m.backend,
            m.operation,
            f"{m.rows:,}",
            f"{m.seconds:.3f}",
            f"{m.rows_per_s:,.0f}",
            f"{m.lake_mb_per_s:,.1f}",
            f"{m.memory_mb_per_s:,.1f}",
            f"{m.files_total} written" if m.files_opened is None else f"{m.files_opened} of {m.files_total}",
        )
    console.print(table)
    for line in verification_costs(measurements):
        console.print(line)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    console.print(
        "lake MB = Parquet (zstd) bytes stored or read; in-memory MB = pandas frame size; S3 APIs on 127.0.0.1. "
        f"Peak RSS: {peak_mb:,.0f} MB"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_data", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=10_000_000, help="total OHLCV rows (default 10M)")
    parser.add_argument("--symbols", type=int, default=50, help="number of symbols (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-minio", action="store_true", help="skip the MinIO server run")
    parser.add_argument("--moto", action="store_true", help="also run against the moto S3 API server")
    parser.add_argument("--read-repeats", type=int, default=3, help="full reads per mode, best one counts")
    parser.add_argument("--workdir", type=Path, default=None, help="where the local lake goes (default: a temp dir)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=160)
    # CLI only: keep the library's per-version info logs out of the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    console.log(f"generating {args.rows:,} bars over {args.symbols} symbols")
    gen_s, bars = timed(lambda: generate_bars(args.rows, args.symbols, seed=args.seed))
    console.log(f"generated {len(bars):,} rows in {gen_s:.1f} s")
    measurements: list[Measurement] = []
    with ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qframe-bench-")))
        measurements += bench_backend(
            "local disk", LocalFileStorage(workdir / "lake"), bars, console, read_repeats=args.read_repeats
        )
        if not args.no_minio or args.moto:
            import boto3  # noqa: PLC0415 - only the S3 runs need it

            from tools import services  # noqa: PLC0415 - starts real servers on 127.0.0.1

        if not args.no_minio:
            minio = stack.enter_context(services.minio_server())
            boto3.client("s3", **minio.boto3_kwargs()).create_bucket(Bucket="bench")
            storage = MinIOStorage(
                minio.endpoint_url.removeprefix("http://"),
                minio.access_key_id,
                minio.secret_access_key,
                "bench",
                secure=False,
                prefix="lake",
            )
            measurements += bench_backend("MinIO S3 API", storage, bars, console, read_repeats=args.read_repeats)
        if args.moto:
            moto = stack.enter_context(services.s3_server())
            boto3.client("s3", **moto.boto3_kwargs()).create_bucket(Bucket="bench")
            s3 = S3Storage(
                "bench",
                prefix="lake",
                region_name=moto.region,
                aws_access_key_id=moto.access_key_id,
                aws_secret_access_key=moto.secret_access_key,
                endpoint_url=moto.endpoint_url,
            )
            measurements += bench_backend("moto S3 API", s3, bars, console, read_repeats=args.read_repeats)
    render(measurements, rows=len(bars), symbols=args.symbols, console=console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
