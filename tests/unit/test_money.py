"""streams.core.money: the exact context, plain-notation parsing and formatting."""

from __future__ import annotations

from decimal import Decimal, Inexact, InvalidOperation, Rounded

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.money import EXACT, format_decimal, parse_decimal, significant_digits


def test_exact_context_raises_instead_of_rounding() -> None:
    assert EXACT.prec == 200
    with pytest.raises((Inexact, Rounded)):
        EXACT.divide(Decimal(1), Decimal(3))
    with pytest.raises((Inexact, Rounded)):
        EXACT.add(Decimal("1E+300"), Decimal("1E-300"))
    with pytest.raises(InvalidOperation):
        EXACT.sqrt(Decimal(-1))
    with pytest.raises(ArithmeticError):
        EXACT.divide(Decimal(1), Decimal(0))
    assert EXACT.add(Decimal("0.1"), Decimal("0.2")) == Decimal("0.3")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", Decimal(0)),
        ("12.5", Decimal("12.5")),
        ("1.50", Decimal("1.50")),
        ("-3", Decimal(-3)),
        ("0.0042", Decimal("0.0042")),
        ("123456789012345678901234567890", Decimal("123456789012345678901234567890")),
    ],
)
def test_parse_decimal_accepts_plain_notation(text: str, expected: Decimal) -> None:
    parsed = parse_decimal(text)
    assert parsed == expected
    assert str(parsed) == str(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "+1",
        "1e3",
        "1E3",
        ".5",
        "5.",
        "007",
        "-",
        "NaN",
        "Infinity",
        "1_000",
        "\u0661",
        "0x1",
        "1.2.3",
    ],
)
def test_parse_decimal_rejects_everything_else(text: str) -> None:
    with pytest.raises(ValueError, match="plain-notation"):
        parse_decimal(text)


def test_parse_decimal_error_does_not_echo_long_input() -> None:
    with pytest.raises(ValueError) as info:
        parse_decimal("x" * 10_000)
    assert len(str(info.value)) < 100


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1.500"), "1.5"),
        (Decimal("1E+3"), "1000"),
        (Decimal("0E-7"), "0"),
        (Decimal("-0"), "0"),
        (Decimal("-2.50"), "-2.5"),
        (Decimal("1.0"), "1"),
        (Decimal("0.000001"), "0.000001"),
        (Decimal("1E-30"), "0." + "0" * 29 + "1"),
        (Decimal("123"), "123"),
    ],
)
def test_format_decimal_is_plain_and_normalized(value: Decimal, text: str) -> None:
    assert format_decimal(value) == text


@pytest.mark.parametrize(
    "value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("sNaN")]
)
def test_format_and_significant_digits_reject_non_finite(value: Decimal) -> None:
    with pytest.raises(ValueError):
        format_decimal(value)
    with pytest.raises(ValueError):
        significant_digits(value)


@pytest.mark.parametrize(
    ("value", "digits"),
    [
        ("0", 1),
        ("0.000", 1),
        ("12.50", 3),
        ("100", 3),
        ("0.00012", 2),
        ("1E+18", 19),
        ("-12.5", 3),
        ("999999999999999", 15),
        ("1000000000000000", 16),
        ("0.123456789012345", 15),
        ("1.5E-20", 2),
    ],
)
def test_significant_digits(value: str, digits: int) -> None:
    assert significant_digits(Decimal(value)) == digits


finite_decimals = st.decimals(allow_nan=False, allow_infinity=False)


@given(finite_decimals)
def test_format_then_parse_round_trips_the_value(value: Decimal) -> None:
    text = format_decimal(value)
    assert "E" not in text and "e" not in text
    assert parse_decimal(text) == value
    assert format_decimal(parse_decimal(text)) == text


@given(finite_decimals)
def test_significant_digits_counts_the_formatted_digits(value: Decimal) -> None:
    digits = format_decimal(value.copy_abs()).replace(".", "").lstrip("0")
    assert significant_digits(value) == max(len(digits), 1)
