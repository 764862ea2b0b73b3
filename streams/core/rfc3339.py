"""RFC 3339 timestamps to epoch milliseconds, exactly as the usage event schema accepts them.

The grammar (the schema's pattern says the same): ``YYYY-MM-DDTHH:MM:SS`` with a year
2000-9999, a real calendar day, no leap second, an optional fraction of 1-9 digits
(truncated to milliseconds), and ``Z`` or ``+hh:mm``/``-hh:mm``; ``T`` and ``Z`` in either
case. Parsing is split into minute prefix, seconds and suffix, each memoized, because the
events of a batch share most of them.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["rfc3339_ms"]

# An RFC 3339 timestamp is a minute prefix (day of month checked in _minute_ms), ":",
# two second digits (00-59, no leap second) and a suffix: fraction (group 1), offset sign,
# hours and minutes (groups 2-4) or Z.
_MINUTE = re.compile(
    r"[2-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]",
    re.ASCII,
)
_SUFFIX = re.compile(r"(?:\.([0-9]{1,9}))?(?:[Zz]|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))", re.ASCII)
# Multiplier that turns the first (up to) 3 fraction digits into milliseconds, by length.
_FRACTION_SCALE: Final = (0, 100, 10, 1, 1, 1, 1, 1, 1, 1)

# Days before the first of each month in a common year, and days of each month.
_CUM_DAYS: Final = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_MONTH_DAYS: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_TWO_DIGITS: Final = {f"{n:02d}": n for n in range(100)}
_SECOND_MS: Final = {f"{n:02d}": n * 1000 for n in range(60)}

_MEMO_LIMIT: Final = 4096
_minute_memo: dict[str, int] = {}
_suffix_memo: dict[str, int] = {}


def _remember_ms(memo: dict[str, int], text: str, ms: int) -> None:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[text] = ms


def _minute_ms(prefix: str) -> int | None:
    """Epoch ms of ``YYYY-MM-DDTHH:MM`` (16 chars), None if not a valid minute; memoized."""
    if _MINUTE.fullmatch(prefix) is None:
        return None
    year, month, day = int(prefix[0:4]), _TWO_DIGITS[prefix[5:7]], _TWO_DIGITS[prefix[8:10]]
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if day > _MONTH_DAYS[month] + (month == 2 and leap):
        return None
    y = year - 1
    days = (
        365 * (year - 1970)
        + (y // 4 - y // 100 + y // 400)
        - 477  # leap days before 1970: 1969 // 4 - 1969 // 100 + 1969 // 400
        + _CUM_DAYS[month]
        + (month > 2 and leap)
        + day
        - 1
    )
    ms = (
        days * 86_400_000
        + _TWO_DIGITS[prefix[11:13]] * 3_600_000
        + _TWO_DIGITS[prefix[14:16]] * 60_000
    )
    _remember_ms(_minute_memo, prefix, ms)
    return ms


def _suffix_ms(suffix: str) -> int | None:
    """Milliseconds that fraction and offset (``.123+01:00``) add, None if invalid; memoized.

    Sub-millisecond digits are truncated; the offset converts local time to UTC.
    """
    match = _SUFFIX.fullmatch(suffix)
    if match is None:
        return None
    fraction, sign, hours, minutes = match.group(1, 2, 3, 4)
    ms = int(fraction[:3]) * _FRACTION_SCALE[len(fraction)] if fraction else 0
    if sign:
        offset_ms = _TWO_DIGITS[hours] * 3_600_000 + _TWO_DIGITS[minutes] * 60_000
        ms += -offset_ms if sign == "+" else offset_ms
    _remember_ms(_suffix_memo, suffix, ms)
    return ms


def rfc3339_ms(text: str) -> int | None:
    """Epoch ms of an RFC 3339 timestamp string, None if it is not one (see module doc).

    The string is cut into minute prefix, ``:``, two second digits and suffix; the full
    grammar is exactly that concatenation, so validating the parts validates the whole,
    and the parts repeat across events (memo hits skip the regexes).
    """
    minute_ms = _minute_memo.get(text[:16])
    if minute_ms is None:
        minute_ms = _minute_ms(text[:16])
        if minute_ms is None:
            return None
    second_ms = _SECOND_MS.get(text[17:19]) if text[16:17] == ":" else None
    if second_ms is None:
        return None
    suffix_ms = _suffix_memo.get(text[19:])
    if suffix_ms is None:
        suffix_ms = _suffix_ms(text[19:])
        if suffix_ms is None:
            return None
    return minute_ms + second_ms + suffix_ms
