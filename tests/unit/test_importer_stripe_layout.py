"""Stripe's S3 connector file layout read as usage events (issue 13, item 7).

The files are in exactly the layout Stripe documents for its S3 connector
(recording-usage-in-bulk / recording-usage-via-s3): a JSON array, JSON Lines, or CSV with
``identifier``, ``timestamp`` (Unix seconds), ``event_name`` and ``payload_*`` columns.
"""

from __future__ import annotations

import io
from decimal import Decimal

from streams.core.events import UsageEvent, validate_event
from streams.importer.formats import RowError, read_rows
from streams.importer.stripe_layout import StripeLayout, invert_customers

TS_S = 1_692_852_080
# Stripe's documented examples, verbatim but for the event name.
JSON_ARRAY = b"""[
  {
    "identifier": "26ac9e54-6a13-4b2e-90b0-fedae80bb8f7",
    "timestamp": 1692852080,
    "event_name": "ai_search_api",
    "payload": {
      "value": 200,
      "stripe_customer_id": "cus_123"
    }
  },
  {
    "timestamp": 1692852080,
    "event_name": "ai_search_api",
    "extra_key": "test",
    "payload": {
      "value": 500,
      "stripe_customer_id": "cus_123"
    }
  }
]
"""
JSONL = (b'{"identifier":"123456","timestamp":1692852080,"event_name":"ai_search_api",'
         b'"payload":{"value":200,"stripe_customer_id":"cus_123"}}\n'
         b'{"timestamp":1692852080,"event_name":"ai_search_api","extra_key":"test",'
         b'"payload":{"value":500,"stripe_customer_id":"cus_123"}}\n')
CSV = (b"identifier,timestamp,event_name,payload_stripe_customer_id,payload_value\n"
       b"26ac9e54-6a13-4b2e-90b0-fedae80bb8f7,1692852080,ai_search_api,cus_123,200\n"
       b",1692852080,ai_search_api,cus_123,0.000000000000001\n")

LAYOUT = StripeLayout(event_meters={"ai_search_api": "searches"},
                      customers=invert_customers({"acme": "cus_123", "beta": "cus_456"}))


def events(data: bytes, fmt: str, layout: StripeLayout = LAYOUT) -> list[object]:
    out: list[object] = []
    for _, row in layout.read_rows(io.BytesIO(data), fmt, {}):  # type: ignore[arg-type]
        if isinstance(row, RowError):
            out.append(row.reason)
            continue
        row.setdefault("id", "derived")
        out.append(validate_event(row))
    return out


def test_json_array_and_lines_in_stripe_layout() -> None:
    for data in (JSON_ARRAY, JSONL):
        got = events(data, "jsonl")
        assert all(isinstance(e, UsageEvent) for e in got)
        assert [(e.customer, e.meter, e.value, e.timestamp_ms) for e in got  # type: ignore[union-attr]
                ] == [("acme", "searches", Decimal(200), TS_S * 1000)] * 1 + [
                    ("acme", "searches", Decimal(500), TS_S * 1000)]
        assert got[0].id in ("26ac9e54-6a13-4b2e-90b0-fedae80bb8f7", "123456")  # type: ignore[union-attr]
        assert got[1].id == "derived"  # type: ignore[union-attr]


def test_csv_in_stripe_layout_seconds_not_milliseconds() -> None:
    got = events(CSV, "csv")
    assert [(e.id, e.customer, e.value, e.timestamp_ms) for e in got] == [  # type: ignore[union-attr]
        ("26ac9e54-6a13-4b2e-90b0-fedae80bb8f7", "acme", Decimal(200), TS_S * 1000),
        ("derived", "acme", Decimal("0.000000000000001"), TS_S * 1000)]


def test_the_old_reader_took_stripe_seconds_for_milliseconds() -> None:
    """What the issue saw: the plain CSV reader has no customer/meter and reads the
    timestamp as epoch ms (January 1970)."""
    [(_, row)] = list(read_rows(io.BytesIO(CSV.split(b"\n", 2)[0] + b"\n" + CSV.split(b"\n")[1]
                                           + b"\n"), "csv", {}))
    assert isinstance(row, dict) and row.get("timestamp") == TS_S
    assert "customer" not in row and "meter" not in row


def test_a_fraction_in_json_is_read_exactly() -> None:
    data = (b'{"timestamp":1692852080,"event_name":"ai_search_api",'
            b'"payload":{"value":0.1,"stripe_customer_id":"cus_123","region":"eu"}}\n')
    [event] = events(data, "jsonl")
    assert isinstance(event, UsageEvent)
    assert event.value == Decimal("0.1") and event.attributes == {"region": "eu"}


def test_refusals_name_the_problem() -> None:
    def one(payload: str, name: str = "ai_search_api", ts: str = "1692852080",
            layout: StripeLayout = LAYOUT) -> object:
        data = (f'{{"timestamp":{ts},"event_name":"{name}","payload":{payload}}}\n').encode()
        [got] = events(data, "jsonl", layout)
        return got if isinstance(got, str) else type(got).__name__

    assert one('{"value":1,"stripe_customer_id":"cus_999"}') == "unknown_customer"
    assert one('{"value":1,"stripe_customer_id":"cus_123"}', name="other") == "unknown_meter"
    assert one('{"stripe_customer_id":"cus_123"}') == "missing_field"
    assert one('{"value":1,"stripe_customer_id":"cus_123"}', ts='"2026-01-01"') == \
        "invalid_timestamp"
    shared = StripeLayout(event_meters={"ai_search_api": "searches"},
                          customers=invert_customers({"a": "cus_1", "b": "cus_1"}))
    assert one('{"value":1,"stripe_customer_id":"cus_1"}', layout=shared) == \
        "ambiguous_customer"
    as_id = StripeLayout(event_meters={"ai_search_api": "searches"}, customer_as_id=True)
    assert one('{"value":1,"stripe_customer_id":"cus_999"}', layout=as_id) == "UsageEvent"
    own_key = StripeLayout(event_meters={"ai_search_api": "searches"}, customer_as_id=True,
                           value_key="tokens")
    assert one('{"tokens":"7","stripe_customer_id":"cus_9"}', layout=own_key) == "UsageEvent"
