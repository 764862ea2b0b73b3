"""Stripe's wire conventions, shared by the fake's handlers: errors, JSON, lists, values."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import orjson
from aiohttp import web

from streams.errors import FakeServerError

__all__ = [
    "ApiError",
    "dumps",
    "iso8601",
    "json_response",
    "list_page",
    "parse_iso8601",
    "parse_value",
    "significant_digits",
]

_VALUE_RE = re.compile(r"^-?[0-9]+(?:\.[0-9]+)?$")
MAX_SIGNIFICANT_DIGITS = 15


class ApiError(FakeServerError):
    """An error answer in Stripe's shape: ``{"error": {type, message, code, param}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        err: dict[str, object] = {"type": self.type, "message": self.message}
        if self.code is not None:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            err["param"] = self.param
        return {"error": err}

    def response(self) -> web.Response:
        return json_response(self.body(), status=self.status, headers=self.headers)


_DECIMAL_MARK = "\u2063dec:"
_DECIMAL_RE = re.compile(rb'"\xe2\x81\xa3dec:(-?[0-9]+(?:\.[0-9]+)?)"')


def _decimal_default(obj: object) -> str:
    if isinstance(obj, Decimal):
        return _DECIMAL_MARK + format(obj, "f")
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def dumps(obj: object) -> bytes:
    """orjson, except that a Decimal becomes a JSON number with its exact digits (Stripe
    sends ``aggregated_value`` as a number)."""
    return _DECIMAL_RE.sub(rb"\1", orjson.dumps(obj, default=_decimal_default))


def json_response(
    obj: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(obj), status=status, headers=headers, content_type="application/json"
    )


def list_page(
    items: Sequence[Mapping[str, object]], query: Mapping[str, str], url: str
) -> dict[str, object]:
    """One page of a Stripe list: ``limit`` (1..100, default 10) and ``starting_after``."""
    raw_limit = query.get("limit", "10")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        raise ApiError(400, "Invalid integer: limit must be between 1 and 100.", param="limit")
    limit = int(raw_limit)
    start = 0
    after = query.get("starting_after")
    if after is not None:
        ids = [str(item["id"]) for item in items]
        if after not in ids:
            raise ApiError(
                400, f"No such object: '{after}'", code="resource_missing", param="starting_after"
            )
        start = ids.index(after) + 1
    page = list(items[start : start + limit])
    return {"object": "list", "data": page, "has_more": start + limit < len(items), "url": url}


def significant_digits(text: str) -> int:
    """Significant digits of a plain decimal string (leading zeros and trailing fraction
    zeros don't count)."""
    integer, _, fraction = text.lstrip("-").partition(".")
    return len((integer + fraction.rstrip("0")).lstrip("0"))


def parse_value(text: str, *, allow_negative: bool) -> Decimal:
    """A meter event value: plain decimal notation, at most 15 significant digits."""
    if not _VALUE_RE.match(text):
        raise ApiError(
            400,
            f"The value '{text[:50]}' is not a valid number.",
            code="meter_event_invalid_value",
            param="payload[value]",
        )
    if significant_digits(text) > MAX_SIGNIFICANT_DIGITS:
        raise ApiError(
            400,
            f"The value '{text[:50]}' has more than {MAX_SIGNIFICANT_DIGITS} significant digits.",
            code="meter_event_value_too_many_digits",
            param="payload[value]",
        )
    value = Decimal(text)
    if value < 0 and not allow_negative:
        raise ApiError(
            400,
            f"The value '{text[:50]}' must not be negative.",
            code="meter_event_invalid_value",
            param="payload[value]",
        )
    return value


def iso8601(ts_s: float) -> str:
    """Stripe v2 timestamps: RFC 3339 in UTC with milliseconds, e.g. 2026-01-01T00:00:00.000Z."""
    text = datetime.fromtimestamp(ts_s, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_iso8601(text: str) -> float:
    """Seconds since the epoch; ValueError unless the string carries a UTC offset."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp without a UTC offset")
    return parsed.timestamp()
