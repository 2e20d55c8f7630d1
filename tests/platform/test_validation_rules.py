"""Market-data validation: each rule fires on exactly the offending rows, reports are readable, input untouched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.data_lake.validation import (
    RULES,
    MarketDataValidationError,
    validate_market_data,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def bars() -> pd.DataFrame:
    return generate_market_data(["AAA", "BBB", "CCC"], periods=50, freq="1h", seed=7)


def test_generated_bars_are_valid(bars: pd.DataFrame) -> None:
    report = validate_market_data(bars)
    assert report.ok
    assert report.n_rows == 150
    assert report.n_invalid == 0
    assert report.summary() == "market data valid: 150 rows"
    report.raise_if_invalid()


@pytest.mark.parametrize(
    ("rule", "row", "edit"),
    [
        ("price_not_finite", 3, {"close": np.nan}),
        ("price_not_finite", 4, {"open": np.inf}),
        ("low_not_positive", 5, {"low": 0.0}),
        ("high_below_open_close", 6, {"high": -1.0}),
        ("low_above_open_close", 7, {"low": 1e9}),
        ("volume_invalid", 8, {"volume": -1.0}),
        ("volume_invalid", 9, {"volume": np.nan}),
        ("symbol_missing", 10, {"symbol": ""}),
    ],
)
def test_each_value_rule_flags_exactly_the_broken_row(
    bars: pd.DataFrame, rule: str, row: int, edit: dict[str, object]
) -> None:
    broken = bars.copy()
    for column, value in edit.items():
        broken.loc[row, column] = value
    report = validate_market_data(broken)
    assert not report.ok
    assert rule in report.rules_broken
    violation = next(v for v in report.violations if v.rule == rule)
    assert violation.count == 1
    assert violation.examples[0]["row"] == row
    assert violation.examples[0]["symbol"] == broken.loc[row, "symbol"]
    assert np.flatnonzero(report.invalid_mask).tolist() == [row]
    assert rule in report.row_reasons[row]


def test_high_below_low_breaks_both_ordering_rules(bars: pd.DataFrame) -> None:
    broken = bars.copy()
    broken.loc[2, ["open", "high", "low", "close"]] = [10.0, 9.0, 11.0, 10.0]
    report = validate_market_data(broken)
    assert set(report.rules_broken) == {"high_below_open_close", "low_above_open_close"}
    assert report.row_reasons[2] == "high_below_open_close,low_above_open_close"
    assert report.n_invalid == 1


def test_duplicate_and_backwards_timestamps_are_flagged_per_symbol(bars: pd.DataFrame) -> None:
    broken = bars.copy()
    broken.loc[11, "timestamp"] = broken.loc[10, "timestamp"]  # AAA repeats a bar
    broken.loc[60, "timestamp"] = broken.loc[55, "timestamp"]  # BBB goes back in time
    report = validate_market_data(broken)
    dup = next(v for v in report.violations if v.rule == "timestamp_duplicate")
    back = next(v for v in report.violations if v.rule == "timestamp_not_increasing")
    # Row 11 repeats row 10's time; row 60 is earlier than row 59 (row 61 is later than row 60, so it is fine).
    assert [e["row"] for e in dup.examples] == [11]
    assert [e["row"] for e in back.examples] == [60]
    assert report.n_invalid == 2


def test_same_timestamp_on_different_symbols_and_interleaved_rows_are_fine(bars: pd.DataFrame) -> None:
    interleaved = bars.sort_values(["timestamp", "symbol"], kind="stable").reset_index(drop=True)
    assert validate_market_data(interleaved).ok
    shuffled = interleaved.sample(frac=1.0, random_state=3).reset_index(drop=True)
    report = validate_market_data(shuffled)
    assert report.rules_broken == ("timestamp_not_increasing",)


def test_missing_timestamp_is_its_own_rule_not_an_order_error(bars: pd.DataFrame) -> None:
    broken = bars.copy()
    broken.loc[20, "timestamp"] = pd.NaT
    report = validate_market_data(broken)
    assert report.rules_broken == ("timestamp_missing",)
    assert report.n_invalid == 1


def test_counts_are_complete_while_examples_are_capped(bars: pd.DataFrame) -> None:
    broken = bars.copy()
    broken.loc[0:39, "volume"] = -5.0
    report = validate_market_data(broken, max_examples=3)
    (violation,) = report.violations
    assert violation.count == 40
    assert [e["row"] for e in violation.examples] == [0, 1, 2]
    assert "... and 37 more" in report.summary()


def test_error_message_lists_rules_counts_rows_and_the_fix(bars: pd.DataFrame) -> None:
    broken = bars.copy()
    broken.loc[12, "low"] = -3.0
    broken.loc[13, "close"] = np.nan
    report = validate_market_data(broken)
    with pytest.raises(MarketDataValidationError) as caught:
        report.raise_if_invalid()
    message = str(caught.value)
    assert caught.value.report is report
    assert "2 of 150 rows break 2 rule(s)" in message
    assert f"low_not_positive (1 rows): {RULES['low_not_positive']}" in message
    assert "price_not_finite (1 rows)" in message
    assert "row 12: symbol='AAA'" in message
    assert "low=-3.0" in message
    assert "quarantine=True" in message


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda df: df.drop(columns=["volume", "low"]), "missing required column(s) ['low', 'volume']"),
        (lambda df: df.assign(timestamp=df["timestamp"].dt.tz_localize(None)), "tz_localize('UTC')"),
        (lambda df: df.assign(timestamp=df["timestamp"].dt.tz_convert("America/New_York")), "tz_convert('UTC')"),
        (lambda df: df.assign(timestamp=df["timestamp"].astype(str)), "pd.to_datetime(df['timestamp'], utc=True)"),
        (lambda df: df.assign(volume=df["volume"].astype("int64")), "volume has dtype int64, expected float64"),
        (lambda df: df.assign(symbol=np.arange(len(df))), "symbol has dtype int64, expected strings"),
    ],
)
def test_schema_problems_are_reported_with_their_fix(bars: pd.DataFrame, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    report = validate_market_data(mutate(bars))
    assert not report.ok
    assert report.violations == ()
    assert any(expected in err for err in report.schema_errors), report.schema_errors
    with pytest.raises(MarketDataValidationError, match="schema problem"):
        report.raise_if_invalid()


def test_validation_does_not_modify_its_input(bars: pd.DataFrame) -> None:
    broken = bars.copy()
    broken.loc[3, "high"] = 0.1
    before = broken.copy()
    validate_market_data(broken)
    pd.testing.assert_frame_equal(broken, before)


def test_negative_max_examples_is_refused(bars: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="max_examples"):
        validate_market_data(bars, max_examples=-1)


def test_empty_frame_with_the_right_columns_is_valid(bars: pd.DataFrame) -> None:
    assert validate_market_data(bars.iloc[0:0]).ok
