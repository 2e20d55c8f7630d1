"""Parameter grids: a dict of value lists becomes validated combinations, then blocks of combinations.

Order is deterministic (parameters in the strategy's declared order, values in the order given), so
task ids and result rows are the same on every run. Combinations the strategy calls invalid (say a
fast window not shorter than the slow one) are dropped and counted, never silently kept.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence

import structlog
from qframe.research.backtesting.strategies import ParamSpec, get_strategy
from qframe.research.backtesting.types import ParamValue

log = structlog.get_logger(__name__)

Grid = Mapping[str, Sequence[ParamValue] | ParamValue]


class GridError(ValueError):
    """A parameter grid names an unknown parameter, has no values, or a value of the wrong kind."""


def expand_grid(strategy: str, grid: Grid) -> list[dict[str, ParamValue]]:
    """Every valid combination of ``grid`` for the registered ``strategy``; missing parameters take defaults."""
    cls = get_strategy(strategy)
    specs = cls.parameters
    unknown = sorted(set(grid) - set(specs))
    if unknown:
        raise GridError(
            f"{strategy}: unknown parameter(s) {unknown}; its parameters are {list(specs)} "
            f"(e.g. --grid {strategy}.{next(iter(specs))}=...)"
        )
    axes: list[list[ParamValue]] = []
    for name, spec in specs.items():
        raw = grid.get(name, [spec.default])
        values = list(raw) if isinstance(raw, list | tuple | range) else [raw]
        if not values:
            raise GridError(f"{strategy}.{name}: the grid gives no values; give at least one or leave it out")
        axes.append([_coerce(f"{strategy}.{name}", value, spec) for value in values])
    combos = [dict(zip(specs, values, strict=True)) for values in itertools.product(*axes)]
    unique = list({tuple(combo.items()): combo for combo in combos}.values())
    valid = [combo for combo in unique if cls.valid(combo)]
    dropped = len(unique) - len(valid)
    if dropped:
        log.info("grid combinations dropped as invalid", strategy=strategy, dropped=dropped, kept=len(valid))
    if not valid:
        raise GridError(f"{strategy}: none of the {len(unique)} combinations is valid ({cls.valid.__doc__ or ''})")
    return valid


def _coerce(key: str, value: object, spec: ParamSpec) -> ParamValue:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GridError(f"{key}: {value!r} is not a number")
    if spec.kind is int:
        if not float(value).is_integer():
            raise GridError(f"{key} takes whole numbers, got {value!r}")
        coerced: ParamValue = int(value)
    else:
        if not math.isfinite(float(value)):
            raise GridError(f"{key}: {value!r} is not finite")
        coerced = float(value)
    if spec.minimum is not None and coerced < spec.minimum:
        raise GridError(f"{key} must be >= {spec.minimum}, got {value!r}")
    if spec.maximum is not None and coerced > spec.maximum:
        raise GridError(f"{key} must be <= {spec.maximum}, got {value!r}")
    return coerced


def iter_blocks(combos: Iterable[dict[str, ParamValue]], block_size: int) -> Iterator[list[dict[str, ParamValue]]]:
    """Consecutive blocks of at most ``block_size`` combinations (one backend task each)."""
    if block_size < 1:
        raise GridError(f"block_size must be >= 1, got {block_size}")
    iterator = iter(combos)
    while block := list(itertools.islice(iterator, block_size)):
        yield block


def parse_grid_value(text: str) -> list[ParamValue]:
    """``"5,10,20"`` or a range ``"10:50:10"`` (start:stop:step, stop included) as numbers."""
    text = text.strip()
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise GridError(f"range {text!r} must be start:stop:step, e.g. 10:50:10")
        start, stop, step = (_number(part, text) for part in parts)
        if step <= 0 or stop < start:
            raise GridError(f"range {text!r} needs step > 0 and stop >= start")
        count = math.floor((stop - start) / step + 1e-9) + 1
        values = [start + i * step for i in range(count)]
        return [int(v) if all(isinstance(x, int) for x in (start, step)) else float(v) for v in values]
    values = [_number(part, text) for part in text.split(",") if part.strip()]
    if not values:
        raise GridError(f"no values in {text!r}; give a comma list like 5,10,20 or a range like 10:50:10")
    return values


def _number(part: str, whole: str) -> ParamValue:
    try:
        as_float = float(part)
    except ValueError:
        raise GridError(f"{part.strip()!r} in {whole!r} is not a number") from None
    return int(as_float) if as_float.is_integer() and "." not in part and "e" not in part.lower() else as_float
