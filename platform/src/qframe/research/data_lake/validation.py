"""Market-data validation that runs before anything is written to the lake.

Every check is a vectorised NumPy expression over whole columns, so ten million bars validate in
seconds. The result is a :class:`ValidationReport`: structural problems (missing columns, wrong
dtypes, naive timestamps) that make row checks meaningless, and per-rule row violations with a
count and the first offending rows. The per-row mask lets the ingestion pipeline split a batch into
valid rows and a quarantine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

REQUIRED_COLUMNS: Final = ("timestamp", "symbol", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: Final = ("open", "high", "low", "close")
NUMERIC_COLUMNS: Final = (*PRICE_COLUMNS, "volume")

# Rule id -> the sentence a researcher reads. Order is the order rules appear in reports.
RULES: Final[Mapping[str, str]] = {
    "timestamp_missing": "timestamp must not be NaT",
    "symbol_missing": "symbol must be a non-empty string",
    "price_not_finite": "open, high, low and close must be finite numbers (no NaN or inf)",
    "low_not_positive": "low must be > 0",
    "high_below_open_close": "high must be >= max(open, close)",
    "low_above_open_close": "low must be <= min(open, close)",
    "volume_invalid": "volume must be a finite number >= 0 (no NaN)",
    "timestamp_duplicate": "timestamps must be unique per symbol",
    "timestamp_not_increasing": "timestamps must increase per symbol, in row order",
}

# normalise_bars sets this attribute on the frame when timestamps without a zone were read in a zone (UTC by
# default); the report then says so, so validating a file states what ingesting it would store.
NAIVE_TIMESTAMPS_ATTR: Final = "qframe.naive_timestamps_read_in"
MAX_GAP_EXAMPLES: Final = 5

QUARANTINE_HINT: Final = (
    "fix: correct or drop these rows and retry, or pass quarantine=True to DataIngestionPipeline to write the "
    "valid rows to the lake and set the offending rows aside (dataset 'quarantine.<name>', quality QUARANTINED)"
)


@dataclass(frozen=True)
class RuleViolation:
    """One broken rule: how many rows break it and the first few of them."""

    rule: str
    description: str
    count: int
    examples: tuple[dict[str, Any], ...]  # row (0-based position), symbol, timestamp and the numeric values


@dataclass(frozen=True)
class GapReport:
    """Missing bars of one symbol against its inferred bar frequency (outages, not rule violations)."""

    symbol: str
    frequency: str  # how the expected spacing was inferred, e.g. "1h bars, 24/7 calendar: ..."
    count: int
    missing_bars: int
    largest: pd.Timedelta
    largest_after: pd.Timestamp  # the last bar before the largest gap
    examples: tuple[tuple[pd.Timestamp, pd.Timestamp], ...]  # (last bar before, first bar after)

    def describe(self) -> str:
        shown = ", ".join(f"{a} -> {b}" for a, b in self.examples)
        more = f" (+{self.count - len(self.examples)} more)" if self.count > len(self.examples) else ""
        return (
            f"{self.symbol}: {self.count} gap(s), ~{self.missing_bars} missing bar(s), largest {_span(self.largest)} "
            f"after {self.largest_after}; expected {self.frequency}; gaps: {shown}{more}"
        )


def _span(delta: pd.Timedelta) -> str:
    return str(delta).removeprefix("0 days ")


@dataclass(frozen=True, eq=False)
class ValidationReport:
    """What is wrong with a frame of bars. ``ok`` is True only when nothing is."""

    n_rows: int
    schema_errors: tuple[str, ...]
    violations: tuple[RuleViolation, ...]
    # True for each row that breaks at least one row rule; all False when schema errors stopped the row checks.
    invalid_mask: np.ndarray = field(repr=False)
    # Per row, the ids of the rules it breaks joined by ",", "" for valid rows.
    row_reasons: np.ndarray = field(repr=False)
    # Warnings that do not reject the data: gaps per symbol, and how timestamps without a zone were read.
    gaps: tuple[GapReport, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.schema_errors and not self.violations

    @property
    def n_invalid(self) -> int:
        return int(self.invalid_mask.sum())

    @property
    def rules_broken(self) -> tuple[str, ...]:
        return tuple(v.rule for v in self.violations)

    def summary(self, *, max_rows: int | None = None) -> str:
        """A readable multi-line account of every problem, ending with how to fix it."""
        if self.ok:
            return "\n".join([f"market data valid: {self.n_rows} rows", *self._warnings()])
        lines: list[str] = []
        if self.schema_errors:
            lines.append(f"market data rejected: {len(self.schema_errors)} schema problem(s), rows were not checked")
            lines.extend(f"  - {err}" for err in self.schema_errors)
            return "\n".join(lines)
        lines.append(
            f"market data rejected: {self.n_invalid} of {self.n_rows} rows break {len(self.violations)} rule(s)"
        )
        for violation in self.violations:
            lines.append(f"  - {violation.rule} ({violation.count} rows): {violation.description}")
            shown = violation.examples if max_rows is None else violation.examples[:max_rows]
            lines.extend(f"      {_format_example(example)}" for example in shown)
            hidden = violation.count - len(shown)
            if hidden > 0:
                lines.append(f"      ... and {hidden} more")
        lines.extend(self._warnings())
        lines.append(QUARANTINE_HINT)
        return "\n".join(lines)

    def _warnings(self) -> list[str]:
        lines = [f"note: {note}" for note in self.notes]
        if self.gaps:
            total = sum(gap.count for gap in self.gaps)
            lines.append(f"warning: {total} gap(s) in the bars (returns and features span them):")
            lines.extend(f"  - {gap.describe()}" for gap in self.gaps)
        return lines

    def raise_if_invalid(self) -> None:
        if not self.ok:
            raise MarketDataValidationError(self)


class MarketDataValidationError(ValueError):
    """Bars broke validation rules; ``report`` holds the details and the message lists them."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.summary())


def validate_market_data(df: pd.DataFrame, *, max_examples: int = 20) -> ValidationReport:
    """Check OHLCV bars against the lake's rules; never modifies ``df``.

    Per-symbol timestamp order is checked in the row order given (interleaved symbols are fine), so a
    batch that arrives out of order is reported rather than silently sorted.
    """
    if max_examples < 0:
        raise ValueError(f"max_examples must be >= 0, got {max_examples}")
    n_rows = len(df)
    schema_errors = _schema_errors(df)
    notes: tuple[str, ...] = ()
    if NAIVE_TIMESTAMPS_ATTR in df.attrs:
        zone = df.attrs[NAIVE_TIMESTAMPS_ATTR]
        notes = (
            f"timestamps without a time zone were read as {zone} (the lake stores UTC instants); if they are "
            "another zone's local times, say so when ingesting: DataIngestionPipeline(...).ingest_file_sync(..., "
            "source_tz='<zone>')",
        )
    if schema_errors:
        empty = np.zeros(n_rows, dtype=bool)
        return ValidationReport(n_rows, tuple(schema_errors), (), empty, np.full(n_rows, "", dtype=object), (), notes)

    masks = _rule_masks(df)
    violations: list[RuleViolation] = []
    invalid = np.zeros(n_rows, dtype=bool)
    reasons = np.full(n_rows, "", dtype=object)
    for rule, description in RULES.items():
        mask = masks[rule]
        count = int(mask.sum())
        if count == 0:
            continue
        invalid |= mask
        reasons[mask] = np.where(reasons[mask] == "", rule, reasons[mask] + "," + rule)
        rows = np.flatnonzero(mask)[:max_examples]
        violations.append(RuleViolation(rule, description, count, _examples(df, rows)))
    gaps = find_gaps(df[~invalid])
    return ValidationReport(n_rows, (), tuple(violations), invalid, reasons, gaps, notes)


def find_gaps(df: pd.DataFrame) -> tuple[GapReport, ...]:
    """Per symbol, spacings longer than the inferred bar frequency allows (calendar-aware).

    24/7 bars and weekly or longer bars: a spacing over 1.5 bars is a gap. Exchange-session intraday bars:
    only within one UTC day (nights and weekends are the calendar). Exchange daily bars: two or more
    missing weekdays in a row (a lone weekday is usually a holiday). Symbols with fewer than 3 bars are
    skipped (no frequency to infer).
    """
    from qframe.research.bar_frequency import infer_bar_frequency  # noqa: PLC0415 - pandas-only, small

    reports: list[GapReport] = []
    for symbol, rows in df.groupby(df["symbol"].astype(str), sort=True):
        stamps = pd.DatetimeIndex(rows["timestamp"]).dropna().unique().sort_values()
        if len(stamps) < 3:
            continue
        frequency = infer_bar_frequency(stamps)
        if frequency.bar is None:
            continue
        before, after = stamps[:-1], stamps[1:]
        spacing = after - before
        bar = frequency.bar
        days = bar / pd.Timedelta(days=1)
        if frequency.calendar == "exchange sessions" and days < 4.5:
            if days >= 0.8:
                missing = (
                    np.busday_count(
                        before.tz_localize(None).values.astype("datetime64[D]"),
                        after.tz_localize(None).values.astype("datetime64[D]"),
                    )
                    - 1
                )
                is_gap = missing >= 2
            else:
                missing = np.rint(spacing / bar).astype(np.int64) - 1
                is_gap = (spacing > 1.5 * bar) & (before.normalize() == after.normalize())
        else:
            missing = np.rint(spacing / bar).astype(np.int64) - 1
            is_gap = spacing > 1.5 * bar
        positions = np.flatnonzero(np.asarray(is_gap))
        if positions.size == 0:
            continue
        largest = positions[int(np.argmax(np.asarray(spacing)[positions]))]
        reports.append(
            GapReport(
                symbol=str(symbol),
                frequency=frequency.describe(),
                count=int(positions.size),
                missing_bars=int(np.asarray(missing)[positions].sum()),
                largest=pd.Timedelta(spacing[largest]),
                largest_after=before[largest],
                examples=tuple((before[i], after[i]) for i in positions[:MAX_GAP_EXAMPLES]),
            )
        )
    return tuple(reports)


def _schema_errors(df: pd.DataFrame) -> list[str]:
    errors: list[str] = []
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        errors.append(
            f"missing required column(s) {missing}; bars need {list(REQUIRED_COLUMNS)} "
            "(rename yours, e.g. DataIngestionPipeline(...).ingest_file_sync(..., column_map={'Date': 'timestamp'}))"
        )
    if df.columns.duplicated().any():
        dupes = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        errors.append(f"duplicate column name(s) {dupes}; every column must appear once")
        return errors
    if "timestamp" in df.columns:
        dtype = df["timestamp"].dtype
        if not isinstance(dtype, pd.DatetimeTZDtype):
            if pd.api.types.is_datetime64_dtype(dtype):
                errors.append(
                    "timestamp is timezone-naive; the lake stores UTC: use df['timestamp'].dt.tz_localize('UTC') "
                    "if the values are UTC, or tz_localize(<their zone>).dt.tz_convert('UTC')"
                )
            else:
                errors.append(
                    f"timestamp has dtype {dtype}, expected datetime64[ns, UTC]: parse it with "
                    "pd.to_datetime(df['timestamp'], utc=True)"
                )
        elif str(dtype.tz) != "UTC":
            errors.append(
                f"timestamp is in time zone {dtype.tz}, expected UTC: use df['timestamp'].dt.tz_convert('UTC')"
            )
    if "symbol" in df.columns and not (
        pd.api.types.is_string_dtype(df["symbol"].dtype) or df["symbol"].dtype == object
    ):
        errors.append(f"symbol has dtype {df['symbol'].dtype}, expected strings: use df['symbol'].astype(str)")
    for column in NUMERIC_COLUMNS:
        if column in df.columns and df[column].dtype != np.float64:
            errors.append(
                f"{column} has dtype {df[column].dtype}, expected float64: use df[{column!r}].astype('float64')"
            )
    return errors


def _rule_masks(df: pd.DataFrame) -> dict[str, np.ndarray]:
    o, h, lo, c, v = (df[col].to_numpy(dtype=np.float64) for col in NUMERIC_COLUMNS)
    ts = df["timestamp"]
    ts_missing = ts.isna().to_numpy()
    symbols = df["symbol"]
    symbol_missing = symbols.isna().to_numpy() | (symbols.astype("str").str.len().to_numpy() == 0)

    prices = np.stack([o, h, lo, c])
    finite = np.isfinite(prices).all(axis=0)
    # Comparisons on NaN are False, so the ordering rules only fire on rows with finite prices.
    with np.errstate(invalid="ignore"):
        low_not_positive = finite & (lo <= 0)
        high_below = finite & (h < np.maximum(o, c))
        low_above = finite & (lo > np.minimum(o, c))
        volume_invalid = ~np.isfinite(v) | (v < 0)

    duplicate, not_increasing = _order_masks(symbols, ts, ts_missing | symbol_missing)
    return {
        "timestamp_missing": ts_missing,
        "symbol_missing": symbol_missing,
        "price_not_finite": ~finite,
        "low_not_positive": low_not_positive,
        "high_below_open_close": high_below,
        "low_above_open_close": low_above,
        "volume_invalid": volume_invalid,
        "timestamp_duplicate": duplicate,
        "timestamp_not_increasing": not_increasing,
    }


def _order_masks(symbols: pd.Series, ts: pd.Series, skip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flag each row whose timestamp equals (duplicate) or precedes (not increasing) the previous row of its symbol."""
    n = len(ts)
    duplicate = np.zeros(n, dtype=bool)
    not_increasing = np.zeros(n, dtype=bool)
    keep = np.flatnonzero(~skip)
    if len(keep) < 2:
        return duplicate, not_increasing
    codes, _ = pd.factorize(symbols.to_numpy()[keep])
    ticks = ts.to_numpy(dtype="datetime64[ns]").view(np.int64)[keep]
    # A stable sort by symbol keeps each symbol's rows in their original order.
    order = np.argsort(codes, kind="stable")
    c_sorted, t_sorted = codes[order], ticks[order]
    same_symbol = c_sorted[1:] == c_sorted[:-1]
    rows = keep[order[1:]]
    duplicate[rows[same_symbol & (t_sorted[1:] == t_sorted[:-1])]] = True
    not_increasing[rows[same_symbol & (t_sorted[1:] < t_sorted[:-1])]] = True
    return duplicate, not_increasing


def _examples(df: pd.DataFrame, rows: np.ndarray) -> tuple[dict[str, Any], ...]:
    subset = df.iloc[rows]
    records: list[dict[str, Any]] = []
    for position, (_, record) in zip(rows.tolist(), subset[list(REQUIRED_COLUMNS)].iterrows(), strict=True):
        example: dict[str, Any] = {"row": position}
        example.update({col: record[col] for col in REQUIRED_COLUMNS})
        records.append(example)
    return tuple(records)


def _format_example(example: Mapping[str, Any]) -> str:
    values = " ".join(f"{col}={example[col]}" for col in NUMERIC_COLUMNS)
    return f"row {example['row']}: symbol={example['symbol']!r} timestamp={example['timestamp']} {values}"
