from decimal import Decimal

import pytest

from infra.quantities import parse_quantity

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("0.5", Decimal("0.5")),
        ("2", Decimal(2)),
        ("512Mi", Decimal(512 * 2**20)),
        ("2Gi", Decimal(2 * 2**30)),
        ("1G", Decimal(10**9)),
        ("1e3", Decimal(1000)),
        ("100k", Decimal(100_000)),
    ],
)
def test_parses_kubernetes_quantities(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


def test_milli_and_decimal_forms_are_equal() -> None:
    assert parse_quantity("100m") == parse_quantity("0.1")


@pytest.mark.parametrize("text", ["", "2 Gi", "1.5.2", "-1", "2GB", "ten", "Gi", "512Mi ", " 1", "2Gi\n", "1\t"])
def test_rejects_non_quantities_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="such as 500m"):
        parse_quantity(text)
