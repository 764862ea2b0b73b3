"""Exact decimal arithmetic and the plain-notation wire form of decimals.

Every amount in meterstream (event values, prices, totals, spend) is a
:class:`decimal.Decimal` computed in :data:`EXACT`: precision 200 digits, and every
condition that would lose information (Inexact, Rounded, InvalidOperation, Overflow,
DivisionByZero) raises instead of rounding. Floats never enter.

On the wire a decimal is a string in plain notation: ASCII digits, an optional fraction,
no exponent, no sign for values >= 0 (``"12.5"``, ``"0.0042"``, ``"100"``).
"""

from __future__ import annotations

import re
from decimal import (
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
)

__all__ = [
    "EXACT",
    "NARROW_SCALE",
    "VALUE_SCALE",
    "TooPrecise",
    "decimal_places",
    "format_decimal",
    "from_units",
    "parse_decimal",
    "significant_digits",
    "text_places",
    "text_units",
    "to_units",
    "unit_pows",
    "units_ceiling",
    "units_text",
    "value_text",
]

EXACT = Context(
    prec=200,
    traps=[Inexact, Rounded, InvalidOperation, Overflow, DivisionByZero],
)
"""The one arithmetic context: a result that is not exact raises, it never rounds."""

VALUE_SCALE = 62
"""Decimal places of the integer units the aggregator sums event values in: a quantity
``q`` is held as the int ``q * 10**62``. A valid event value has at most 64 characters
(``"0."`` and 62 digits at most), so every valid value is a whole number of these units,
and sums, maxima and products with prices stay exact in Python's unbounded ints."""

NARROW_SCALE = 9
"""The narrower unit a batch sums values in when it can (streams.core.aggregate): with
values held as ``q * 10**9``, a quantity below about 4.6 billion is a machine-word int in
the compiled core, where ``q * 10**62`` is a 200-bit one. A batch that meets a value or a
stored total with more decimal places raises :class:`TooPrecise` and is taken again at
:data:`VALUE_SCALE`, which holds every valid value."""


TooPrecise = Inexact
"""What :func:`to_units` raises for a decimal with more decimal places than the scale asked
for: the ``decimal`` module's own signal for a result that would not be exact."""


def unit_pows(scale: int) -> tuple[int, ...]:
    """``pows[k] == 10**(scale - k)`` for ``k`` in ``0..scale``: the units, at ``scale``,
    of one unit of the k-th fraction digit (text_units, and the scan's fast path)."""
    pows = _UNIT_POWS.get(scale)
    if pows is None:
        pows = _UNIT_POWS[scale] = tuple(10 ** (scale - k) for k in range(scale + 1))
    return pows


_UNIT_POWS: dict[int, tuple[int, ...]] = {}

_PLAIN = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?", re.ASCII)


def parse_decimal(text: str) -> Decimal:
    """Parse a decimal in plain notation exactly.

    Accepted: an optional ``-``, an integer part without leading zeros (``0`` alone is
    fine), an optional ``.`` followed by at least one digit; ASCII digits only. Rejected
    with :class:`ValueError`: exponents, ``+``, whitespace, ``NaN``/``Infinity``,
    ``".5"``, ``"5."``, ``"007"``. The result keeps every digit written (``"1.50"`` gives
    ``Decimal("1.50")``); no precision is involved in parsing.
    """
    if type(text) is not str or _PLAIN.fullmatch(text) is None:
        shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:40] + "..."
        raise ValueError(f"not a plain-notation decimal: {shown}")
    return Decimal(text)


def format_decimal(d: Decimal) -> str:
    """The canonical wire form of a finite decimal: plain notation, normalized.

    No exponent, no trailing zeros after the point, no point when the value is whole,
    ``"0"`` for any zero (also ``-0``), ``-`` only for values < 0. Exact for any finite
    Decimal: ``Decimal("1E+3")`` gives ``"1000"``, ``Decimal("1.500")`` gives ``"1.5"``.
    Raises :class:`ValueError` for NaN and infinities.
    """
    if not d.is_finite():
        raise ValueError(f"cannot format a non-finite decimal: {d}")
    if not d:
        return "0"
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def significant_digits(d: Decimal) -> int:
    """Significant digits of a finite decimal in its plain-notation reading.

    The count of digits in :func:`format_decimal` of ``abs(d)``, not counting leading
    zeros: for ``|d| >= 1`` every digit of the integer part (trailing zeros included) plus
    the fraction digits up to the last non-zero one; for ``0 < |d| < 1`` the digits from
    the first to the last non-zero fraction digit; ``1`` for zero. So ``"12.50"`` -> 3,
    ``"100"`` -> 3, ``"0.00012"`` -> 2, ``"1E+18"`` -> 19. A value with at most 15 such
    digits is below 10**15 and is what Stripe accepts. Raises :class:`ValueError` for NaN
    and infinities.
    """
    if not d.is_finite():
        raise ValueError(f"not a finite decimal: {d}")
    if not d:
        return 1
    _, digits, exponent = d.as_tuple()
    # Strip trailing zeros of the coefficient into the exponent (normalize() could round).
    n = len(digits)
    while digits[n - 1] == 0:
        n -= 1
    exponent_int = int(exponent) + (len(digits) - n)
    # A non-negative exponent means trailing zeros of the integer part: they count.
    return n + exponent_int if exponent_int > 0 else n


def to_units(d: Decimal, scale: int) -> int:
    """``d * 10**scale`` as an int; :class:`TooPrecise` if that is not a whole number."""
    scaled = d.scaleb(scale, EXACT)
    units = int(scaled)
    if units != scaled:
        raise TooPrecise(f"{d} has more than {scale} decimal places")
    return units


def from_units(units: int, scale: int) -> Decimal:
    """The exact Decimal ``units * 10**-scale``."""
    return Decimal(units).scaleb(-scale, EXACT)


def units_ceiling(d: Decimal, scale: int) -> int:
    """The least int ``u`` with ``u * 10**-scale >= d`` (exact, for any finite ``d``)."""
    scaled = d.scaleb(scale, EXACT)
    units = int(scaled)  # truncates toward zero
    return units + 1 if units < scaled else units


_SHORT_SCALE = 9
_SHORTEN = {scale: 10 ** (scale - _SHORT_SCALE) for scale in range(_SHORT_SCALE + 1, 128)}


def units_text(units: int, scale: int) -> str:
    """``format_decimal(from_units(units, scale))``, straight from the int."""
    if not units:
        return "0"
    if scale > _SHORT_SCALE:
        # Most amounts have few decimals: format the much smaller int at scale 9 then.
        shorten = _SHORTEN.get(scale) or 10 ** (scale - _SHORT_SCALE)
        head, rest = divmod(units, shorten)
        if not rest:
            units, scale = head, _SHORT_SCALE
    sign = "-" if units < 0 else ""
    digits = str(-units if sign else units)
    if scale <= 0:
        return sign + digits + "0" * -scale
    if len(digits) <= scale:
        digits = digits.rjust(scale + 1, "0")
    whole, fraction = digits[:-scale], digits[-scale:].rstrip("0")
    return f"{sign}{whole}.{fraction}" if fraction else sign + whole


_VALUE_TEXT_MEMO = 8192
_value_texts: dict[int, dict[int, str]] = {}


def value_text(units: int, scale: int) -> str:
    """``units_text(units, scale)``, remembered: a window's total is formatted for its
    summary and again for its record, in the same batch. Bounded; cleared when full."""
    texts = _value_texts.get(scale)
    if texts is None:
        texts = _value_texts[scale] = {}
    text = texts.get(units)  # (half the calls miss: no KeyError raised for them)
    if text is None:
        if len(texts) >= _VALUE_TEXT_MEMO:
            texts.clear()
        text = texts[units] = units_text(units, scale)
    return text


def decimal_places(d: Decimal) -> int:
    """The decimal places of a finite decimal as written (2 for ``1.50``, 0 for ``1E+3``):
    the least scale at which :func:`to_units` takes it whole."""
    exponent = d.as_tuple().exponent
    if not isinstance(exponent, int):
        raise ValueError(f"not a finite decimal: {str(d)[:40]!r}")
    return -exponent if exponent < 0 else 0


def text_places(text: str) -> int:
    """The decimal places of ``text``, a finite decimal in any notation ``Decimal`` reads:
    the least scale at which :func:`text_units` takes it whole."""
    if "e" in text or "E" in text:
        return decimal_places(Decimal(text))
    dot = text.find(".")
    return 0 if dot < 0 else len(text) - dot - 1


def text_units(text: str, scale: int) -> int:
    """``to_units(Decimal(text), scale)``; plain notation (``units_text``) parses fast."""
    if text == "0":  # a window's emitted total before its first summary
        return 0
    whole, dot, fraction = text.partition(".")
    if (whole.isdigit() and whole.isascii() and len(fraction) <= scale
            and (not dot or (fraction.isdigit() and fraction.isascii()))):
        return int(whole + fraction) * unit_pows(scale)[len(fraction)]
    return to_units(Decimal(text), scale)
