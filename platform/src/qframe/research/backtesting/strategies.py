"""Strategies: small classes that turn a block of parameter combinations into target positions.

Adding a strategy means subclassing :class:`Strategy` with a ``name`` (it registers itself), declaring its
``parameters`` and writing a vectorised :meth:`Strategy.signals`::

    class Momentum(Strategy):
        name = "momentum"
        parameters = {"lookback": ParamSpec(int, 20, minimum=1, help="bars of past return")}

        def signals(self, data, params):
            lookback = params["lookback"]                      # one value per combination
            past = np.full((len(data), lookback.size), np.nan)
            for j, k in enumerate(lookback):
                past[k:, j] = data.close[k:] / data.close[:-k] - 1
            return np.sign(np.nan_to_num(past))               # (n_bars, n_combos) in [-1, 1]

Row ``t`` of the targets is the position wanted at the close of bar ``t`` and may use data up to ``t`` only;
the simulator holds it over bar ``t + 1`` (see :mod:`qframe.research.backtesting.kernels`). Built-ins also
provide a fused numba path (:meth:`Strategy.fused`) that the evaluator uses automatically; it gives the
same numbers as ``signals`` followed by the generic simulation.
"""

from __future__ import annotations

import functools
import hashlib
import math
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from qframe.research.backtesting import kernels
from qframe.research.backtesting.types import MarketData, ParamValue

ParamBlock = Mapping[str, np.ndarray]
Window = tuple[int, int]

_REGISTRY: dict[str, type[Strategy]] = {}


class StrategyError(ValueError):
    """An unknown strategy name, a bad parameter combination or a strategy returning malformed targets."""


@dataclass(frozen=True)
class ParamSpec:
    """One declared strategy parameter: its kind (int or float), default and inclusive bounds.

    ``lookback=True`` marks a count of bars of history the strategy needs before its first position; the
    sweep planner refuses values longer than the window they would run on (they could never trade).
    """

    kind: type
    default: ParamValue
    minimum: ParamValue | None = None
    maximum: ParamValue | None = None
    help: str = ""
    lookback: bool = False

    def __post_init__(self) -> None:
        if self.kind not in (int, float):
            raise TypeError(f"ParamSpec.kind must be int or float, got {self.kind!r}")

    def check(self, key: str, value: object) -> ParamValue:
        """``value`` as this parameter's kind, or a StrategyError saying what is wrong with it."""
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
            raise StrategyError(f"{key}: {value!r} is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise StrategyError(f"{key}: {value!r} is not finite")
        coerced: ParamValue
        if self.kind is int:
            if not number.is_integer():
                raise StrategyError(f"{key} takes whole numbers, got {value!r}")
            coerced = int(number)
        else:
            coerced = number
        if self.minimum is not None and coerced < self.minimum:
            raise StrategyError(f"{key} must be >= {self.minimum}, got {value!r}")
        if self.maximum is not None and coerced > self.maximum:
            raise StrategyError(f"{key} must be <= {self.maximum}, got {value!r}")
        return coerced


class Strategy(ABC):
    """Base class: subclasses with a ``name`` register themselves under it."""

    name: ClassVar[str]
    parameters: ClassVar[dict[str, ParamSpec]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:
            return
        if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
            raise StrategyError(f"strategy name {name!r} must be a lower-case identifier, e.g. 'my_strategy'")
        previous = _REGISTRY.get(name)
        # Re-running a notebook cell redefines the same class: replace it; another class may not take the name.
        if previous is not None and (previous.__module__, previous.__qualname__) != (cls.__module__, cls.__qualname__):
            raise StrategyError(
                f"strategy name {name!r} is taken by {previous.__module__}.{previous.__qualname__}; choose another"
            )
        if not cls.parameters:
            # Blocks of combinations travel as one array per parameter; a constant strategy still needs one axis.
            raise StrategyError(
                f"strategy {name!r} declares no parameters; declare at least one in `parameters` "
                "(e.g. {'size': ParamSpec(float, 1.0, minimum=0.0, maximum=1.0)})"
            )
        _REGISTRY[name] = cls

    @classmethod
    def lookbacks(cls) -> list[str]:
        """The parameters that count bars of history (``ParamSpec(lookback=True)``)."""
        return [key for key, spec in cls.parameters.items() if spec.lookback]

    @classmethod
    def valid(cls, combo: Mapping[str, ParamValue]) -> bool:
        """Whether a full combination makes sense (override to drop e.g. fast >= slow from grids)."""
        del combo
        return True

    @classmethod
    def complete(cls, combo: Mapping[str, object]) -> dict[str, ParamValue]:
        """``combo`` checked against the declared parameters, with defaults for those left out."""
        unknown = sorted(set(combo) - set(cls.parameters))
        if unknown:
            raise StrategyError(
                f"{cls.name}: unknown parameter(s) {unknown}; its parameters are {list(cls.parameters)}"
            )
        full = {
            key: spec.check(f"{cls.name}.{key}", combo.get(key, spec.default)) for key, spec in cls.parameters.items()
        }
        if not cls.valid(full):
            raise StrategyError(f"{cls.name}: invalid combination {full}: {(cls.valid.__doc__ or '').strip()}")
        return full

    @classmethod
    def param_block(cls, combos: Sequence[Mapping[str, object]]) -> dict[str, np.ndarray]:
        """Checked combinations as one array per parameter (int64 or float64), in combination order."""
        if not combos:
            raise StrategyError(f"{cls.name}: no parameter combinations given")
        full = [cls.complete(combo) for combo in combos]
        return {
            key: np.array([combo[key] for combo in full], dtype=np.int64 if spec.kind is int else np.float64)
            for key, spec in cls.parameters.items()
        }

    @abstractmethod
    def signals(self, data: MarketData, params: ParamBlock) -> np.ndarray:
        """Target positions (n_bars, n_combos) in [-1, 1]; row t may use data up to bar t only."""

    def fused(
        self, data: MarketData, params: ParamBlock, windows: Sequence[Window], *, rate: float, initial_capital: float
    ) -> list[np.ndarray] | None:
        """Accumulators per window from a fused kernel, or None to use ``signals`` + the generic simulation."""
        del data, params, windows, rate, initial_capital
        return None


def get_strategy(name: str) -> type[Strategy]:
    """The registered strategy class called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise StrategyError(
            f"unknown strategy {name!r}; available: {', '.join(available_strategies())} "
            "(subclass qframe.research.backtesting.strategies.Strategy with a `name` to add one)"
        ) from None


def available_strategies() -> list[str]:
    """Registered strategy names, sorted."""
    return sorted(_REGISTRY)


# Strategies of this package exist on every worker (the worker image carries it); any other class may live in a
# notebook cell, exec'd code, a script's __main__ or a module only the driver can import, so it travels by value.
_SHIPPED_BY_REFERENCE = "qframe.research."


def ships_by_value(cls: type[Strategy]) -> bool:
    return not cls.__module__.startswith(_SHIPPED_BY_REFERENCE)


def strategy_payload(name: str) -> bytes | None:
    """The class registered as ``name`` pickled by value for the workers, or None when they can import it.

    Workers would otherwise look the name up in their own registry, where a class defined in a notebook or a
    script was never registered. Needs cloudpickle (installed with the dask and ray extras).
    """
    cls = get_strategy(name)
    if not ships_by_value(cls):
        return None
    try:
        import cloudpickle  # type: ignore[import-untyped]  # noqa: PLC0415 - comes with dask/ray only
    except ImportError:
        return None
    module = sys.modules.get(cls.__module__)
    # Classes of an importable module (e.g. my_strategies.py next to the notebook) pickle by reference unless
    # their module is registered: the workers may not have that file.
    register = module is not None and cls.__module__ != "__main__"
    registered = register and cls.__module__ in cloudpickle.list_registry_pickle_by_value()
    if register and not registered:
        cloudpickle.register_pickle_by_value(module)
    try:
        return bytes(cloudpickle.dumps(cls))
    finally:
        if register and not registered:
            cloudpickle.unregister_pickle_by_value(module)


@functools.lru_cache(maxsize=64)
def strategy_from_payload(payload: bytes) -> type[Strategy]:
    """The class shipped by :func:`strategy_payload` (unpickled once per worker process and payload)."""
    import pickle  # noqa: PLC0415

    cls = pickle.loads(payload)  # noqa: S301 - produced by this sweep's driver, not by an outside party
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise StrategyError(f"the shipped strategy is a {type(cls).__name__}, not a Strategy subclass")
    return cls


def strategy_fingerprint(name: str) -> str | None:
    """Digest of a shipped-by-value strategy's code and parameters, None for built-ins.

    Part of the task ids, so checkpoints of an edited notebook strategy are not resumed as if nothing changed.
    """
    cls = get_strategy(name)
    if not ships_by_value(cls):
        return None
    digest = hashlib.sha256(f"{cls.__module__}.{cls.__qualname__}".encode())
    for klass in cls.__mro__:
        if klass is Strategy or not issubclass(klass, Strategy):
            continue
        for attr, value in sorted(vars(klass).items()):
            function = getattr(value, "__func__", value)
            code = getattr(function, "__code__", None)
            if code is not None:
                digest.update(attr.encode())
                _digest_code(digest, code)
        digest.update(repr(sorted(vars(klass).get("parameters", {}).items())).encode())
    return digest.hexdigest()[:16]


def _digest_code(digest: Any, code: Any) -> None:
    # Nested code objects (comprehensions, inner functions) repr with their memory address: recurse instead.
    digest.update(code.co_code + repr(code.co_names).encode())
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            _digest_code(digest, const)
        else:
            digest.update(repr(const).encode())


def _rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique values and, per combination, the row of its value in a table built over the unique values."""
    unique, inverse = np.unique(values, return_inverse=True)
    return unique, inverse.astype(np.int64)


def _table(unique: np.ndarray, build: Any) -> np.ndarray:
    return np.stack([build(int(value)) for value in unique]) if unique.size else np.empty((0, 0))


class MovingAverageCrossover(Strategy):
    """Long when the fast simple moving average of the close is above the slow one; short (or flat) below.

    Flat until the slow average has a full window. With ``allow_short=0`` the strategy is long/flat.
    """

    name = "ma_crossover"
    parameters: ClassVar[dict[str, ParamSpec]] = {
        "fast": ParamSpec(int, 10, minimum=1, help="bars in the fast moving average", lookback=True),
        "slow": ParamSpec(int, 50, minimum=2, help="bars in the slow moving average", lookback=True),
        "allow_short": ParamSpec(int, 1, minimum=0, maximum=1, help="1: short when fast < slow; 0: flat"),
    }

    @classmethod
    def valid(cls, combo: Mapping[str, ParamValue]) -> bool:
        """the fast window must be shorter than the slow one."""
        return combo["fast"] < combo["slow"]

    @staticmethod
    def _rows(params: ParamBlock) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Distinct windows, and per combination the row of its fast/slow window, bar it is ready, shorting."""
        fast, slow = params["fast"], params["slow"]
        unique, inverse = _rows(np.concatenate([fast, slow]))
        n = fast.size
        ready = (np.maximum(fast, slow) - 1).astype(np.int64)
        return unique.astype(np.int64), inverse[:n], inverse[n:], ready, params["allow_short"].astype(np.bool_)

    def signals(self, data: MarketData, params: ParamBlock) -> np.ndarray:
        unique, fast_row, slow_row, ready, allow_short = self._rows(params)
        means = _table(unique, lambda window: kernels.rolling_mean_std(data.close, window)[0])
        return np.asarray(kernels.ma_crossover_targets(means, fast_row, slow_row, ready, allow_short))

    def fused(
        self, data: MarketData, params: ParamBlock, windows: Sequence[Window], *, rate: float, initial_capital: float
    ) -> list[np.ndarray] | None:
        rows = self._rows(params)
        returns = kernels.bar_returns(data.close)
        return [
            np.asarray(kernels.ma_crossover_fused(data.close, *rows, returns, start, end, rate, initial_capital))
            for start, end in windows
        ]


class AdaptiveMeanReversion(Strategy):
    """Fade stretched prices: z-score of the close against its ``lookback_long`` mean and std.

    The entry threshold adapts to volatility: ``z_entry_base * clip(vol_short / vol_long, 0.5, 2)`` where the
    vols are sample stds of bar returns over ``lookback_short`` and ``lookback_long`` bars (more turbulent
    than usual -> demand a bigger stretch). From flat: long below ``-threshold``, short above ``+threshold``;
    a long exits when z crosses back to >= 0, a short when z <= 0 (and may re-enter the other way that bar).
    Flat until ``lookback_long`` bars of returns exist; a zero std holds the current position.
    """

    name = "adaptive_mean_reversion"
    parameters: ClassVar[dict[str, ParamSpec]] = {
        "lookback_short": ParamSpec(int, 20, minimum=2, help="bars in the short volatility window", lookback=True),
        "lookback_long": ParamSpec(
            int, 100, minimum=3, help="bars in the mean/std and long volatility window", lookback=True
        ),
        "z_entry_base": ParamSpec(float, 1.5, minimum=0.0, help="entry z-score at normal volatility"),
    }

    @classmethod
    def valid(cls, combo: Mapping[str, ParamValue]) -> bool:
        """lookback_short must be shorter than lookback_long."""
        return combo["lookback_short"] < combo["lookback_long"]

    def signals(self, data: MarketData, params: ParamBlock) -> np.ndarray:
        short, long_ = params["lookback_short"], params["lookback_long"]
        returns = kernels.bar_returns(data.close)
        unique_short, row_short = _rows(short)
        unique_long, row_long = _rows(long_)
        price = [kernels.rolling_mean_std(data.close, int(w)) for w in unique_long]
        price_mean = np.stack([mean for mean, _ in price])
        price_std = np.stack([std for _, std in price])
        vol_short = _table(unique_short, lambda w: kernels.rolling_mean_std(returns, w)[1])
        vol_long = _table(unique_long, lambda w: kernels.rolling_mean_std(returns, w)[1])
        return np.asarray(
            kernels.mean_reversion_targets(
                data.close,
                price_mean,
                price_std,
                vol_short,
                vol_long,
                row_short,
                row_long,
                long_.astype(np.int64),
                params["z_entry_base"].astype(np.float64),
            )
        )

    def fused(
        self, data: MarketData, params: ParamBlock, windows: Sequence[Window], *, rate: float, initial_capital: float
    ) -> list[np.ndarray] | None:
        unique_short, row_short = _rows(params["lookback_short"])
        unique_long, row_long = _rows(params["lookback_long"])
        returns = kernels.bar_returns(data.close)
        z_entry = params["z_entry_base"].astype(np.float64)
        return [
            np.asarray(
                kernels.mean_reversion_fused(
                    data.close,
                    returns,
                    unique_long.astype(np.int64),
                    unique_short.astype(np.int64),
                    row_short,
                    row_long,
                    z_entry,
                    start,
                    end,
                    rate,
                    initial_capital,
                )
            )
            for start, end in windows
        ]


class MomentumBreakout(Strategy):
    """Donchian breakout: long when the close breaks above the previous ``lookback`` bars' high, short below
    their low (if ``allow_short``); a long exits when the close falls below the previous ``exit_lookback`` bars'
    low, a short when it rises above their high. Flat until ``lookback`` bars of history exist.
    """

    name = "momentum_breakout"
    parameters: ClassVar[dict[str, ParamSpec]] = {
        "lookback": ParamSpec(int, 20, minimum=1, help="bars in the entry channel", lookback=True),
        "exit_lookback": ParamSpec(int, 10, minimum=1, help="bars in the (tighter) exit channel", lookback=True),
        "allow_short": ParamSpec(int, 1, minimum=0, maximum=1, help="1: also trade downside breakouts"),
    }

    @classmethod
    def valid(cls, combo: Mapping[str, ParamValue]) -> bool:
        """exit_lookback must not exceed lookback."""
        return combo["exit_lookback"] <= combo["lookback"]

    def signals(self, data: MarketData, params: ParamBlock) -> np.ndarray:
        entry, exit_ = params["lookback"], params["exit_lookback"]
        unique, inverse = _rows(np.concatenate([entry, exit_]))
        highs = _table(unique, lambda w: kernels.rolling_extreme(data.high, w, True))
        lows = _table(unique, lambda w: kernels.rolling_extreme(data.low, w, False))
        n = entry.size
        return np.asarray(
            kernels.breakout_targets(
                data.close,
                highs,
                lows,
                inverse[:n],
                inverse[n:],
                entry.astype(np.int64),
                params["allow_short"].astype(np.bool_),
            )
        )

    def fused(
        self, data: MarketData, params: ParamBlock, windows: Sequence[Window], *, rate: float, initial_capital: float
    ) -> list[np.ndarray] | None:
        n = params["lookback"].size
        unique, inverse = _rows(np.concatenate([params["lookback"], params["exit_lookback"]]))
        returns = kernels.bar_returns(data.close)
        short = params["allow_short"].astype(np.bool_)
        return [
            np.asarray(
                kernels.breakout_fused(
                    data.close,
                    data.high,
                    data.low,
                    returns,
                    unique.astype(np.int64),
                    inverse[:n],
                    inverse[n:],
                    short,
                    start,
                    end,
                    rate,
                    initial_capital,
                )
            )
            for start, end in windows
        ]
