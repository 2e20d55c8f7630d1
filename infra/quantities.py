"""Kubernetes resource quantities ("500m", "2Gi") parsed into exact numbers.

The stack config compares requests with limits and sizes with minimums, so it needs the numeric
value of a quantity, not only its syntax. Decimal keeps "0.1" and "100m" exactly equal.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|e[0-9]+)?$")


def parse_quantity(text: str) -> Decimal:
    """Returns the value of a Kubernetes quantity; raises ValueError naming the accepted forms."""
    # No strip(): Kubernetes refuses "512Mi " and "1\n", so accepting them here would only move the
    # failure from the config check to the middle of a deploy.
    match = _QUANTITY.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"{text!r} is not a Kubernetes quantity; use a number with an optional suffix "
            "such as 500m, 2, 512Mi, 4Gi or 1G"
        )
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"{text!r} is not a number") from exc
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix.startswith("e"):
        return number * (Decimal(10) ** int(suffix[1:]))
    return number * _DECIMAL[suffix]
