"""The importer's row readers, content digests, derived ids and checkpoint, without Kafka."""

from __future__ import annotations

import gzip
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streams.core.events import UsageEvent, validate_event
from streams.importer.checkpoint import Checkpoint
from streams.importer.formats import FileReader, RowError, detect_format, parse_mapping
from streams.importer.sources import (
    LocalSource,
    content_digest,
    derived_event_id,
)

TS = "2026-11-05T12:00:00Z"
TS_MS = 1_793_880_000_000


def rows(path: Path, mapping: dict[str, str] | None = None) -> list[tuple[int, Any]]:
    fmt, gz = detect_format(path.name)
    assert fmt is not None
    with FileReader(path, fmt, gz, mapping or {}) as reader:
        return list(reader.rows())


def test_detect_format() -> None:
    assert detect_format("a/b.JSONL") == ("jsonl", False)
    assert detect_format("x.csv.gz") == ("csv", True)
    assert detect_format("x.parquet.gz") == ("parquet", True)
    assert detect_format("x.txt") == (None, False)


def test_parse_mapping() -> None:
    assert parse_mapping(["value=amount", "attributes.region=rg"]) == {
        "value": "amount", "attributes.region": "rg"}
    with pytest.raises(ValueError, match="unknown event field"):
        parse_mapping(["price=amount"])
    with pytest.raises(ValueError, match="event_field=column"):
        parse_mapping(["value"])


def test_jsonl_rows_line_numbers_and_bad_lines(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_bytes(
        b'{"id":"a","customer":"c-1","meter":"cpu_seconds","value":"1.5","timestamp":"' +
        TS.encode() + b'"}\n'
        b"\n"
        b"{not json\n"
        b"[1,2]\n"
        b'{"customer":"c-2","meter":"cpu_seconds","value":1.5,"timestamp":1}\r\n')
    got = rows(p)
    assert [n for n, _ in got] == [1, 3, 4, 5]
    assert got[0][1]["value"] == "1.5"
    assert isinstance(got[1][1], RowError) and got[1][1].reason == "invalid_json"
    assert got[1][1].original == b"{not json"
    assert isinstance(got[2][1], RowError) and got[2][1].reason == "invalid_shape"
    # A JSON float stays a float: the contract refuses it (invalid_value), never rounds it.
    bad = validate_event(got[3][1] | {"id": "x"})
    assert not isinstance(bad, UsageEvent) and bad.reason == "invalid_value"


def test_jsonl_mapping_renames_keys(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_bytes(orjson.dumps({"cust": "c-1", "meter": "gpu_seconds", "amount": "2",
                                "ts": TS_MS, "rg": "eu"}) + b"\n")
    (_, obj), = rows(p, {"customer": "cust", "value": "amount", "timestamp": "ts",
                         "attributes.region": "rg"})
    assert obj == {"customer": "c-1", "meter": "gpu_seconds", "value": "2",
                   "timestamp": TS_MS, "attributes": {"region": "eu"}}
    assert isinstance(validate_event(obj | {"id": "x"}), UsageEvent)


def test_csv_rows_mapping_types_and_line_numbers(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text(
        "\ufeffcust,meter,amount,when,attributes.zone,note\n"
        "c-1,cpu_seconds, 12.500 ,1793880000000,eu-1,x\n"
        '"c-2",gpu_seconds,0.0042,2026-11-05T12:00:00Z,,"multi\nline"\n'
        "c-3,cpu_seconds,1e3,1793880000000,,\n"
        "c-4,cpu_seconds,1\n"
        "\n"
        "c-5,cpu_seconds,,1793880000000,,\n", encoding="utf-8")
    got = rows(p, {"customer": "cust", "value": "amount", "timestamp": "when"})
    assert [n for n, _ in got] == [2, 3, 5, 6, 8]
    assert got[0][1] == {"customer": "c-1", "meter": "cpu_seconds", "value": "12.500",
                         "timestamp": TS_MS, "attributes": {"zone": "eu-1"}}
    assert got[1][1] == {"customer": "c-2", "meter": "gpu_seconds", "value": "0.0042",
                         "timestamp": TS}
    ev = validate_event(got[0][1] | {"id": "i"})
    assert isinstance(ev, UsageEvent) and ev.value == Decimal("12.5")
    sci = validate_event(got[2][1] | {"id": "i"})
    assert not isinstance(sci, UsageEvent) and sci.reason == "invalid_value"
    assert isinstance(got[3][1], RowError) and got[3][1].reason == "invalid_shape"
    missing = validate_event(got[4][1] | {"id": "i"})
    assert not isinstance(missing, UsageEvent) and missing.reason == "missing_field"


def test_gzip_reads_like_plain(tmp_path: Path) -> None:
    body = "customer,meter,value,timestamp\nc-1,executions,1,1793880000000\n"
    (tmp_path / "a.csv").write_text(body)
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(body.encode(), mtime=0))
    assert rows(tmp_path / "a.csv") == rows(tmp_path / "a.csv.gz")
    # Identity is the decompressed content: the .gz twin is the same file.
    assert content_digest(tmp_path / "a.csv", False) == content_digest(
        tmp_path / "a.csv.gz", True)


def _parquet(path: Path, table: pa.Table, gz: bool = False) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    path.write_bytes(gzip.compress(buf.getvalue()) if gz else buf.getvalue())


def test_parquet_types_are_converted_exactly(tmp_path: Path) -> None:
    table = pa.table({
        "id": pa.array([7, None], pa.int64()),
        "customer": ["c-1", "c-2"],
        "meter": ["cpu_seconds", "cpu_seconds"],
        "value": pa.array([Decimal("0.10"), Decimal("123456789.012345")], pa.decimal128(20, 6)),
        "timestamp": pa.array([TS_MS * 1000 + 999, TS_MS * 1000], pa.timestamp("us", tz="UTC")),
        "attributes": pa.array([[("k", "v")], None], pa.map_(pa.string(), pa.string())),
    })
    _parquet(tmp_path / "e.parquet", table)
    _parquet(tmp_path / "z.parquet.gz", table, gz=True)
    got = rows(tmp_path / "e.parquet")
    assert got == rows(tmp_path / "z.parquet.gz")
    assert got == [
        (1, {"id": "7", "customer": "c-1", "meter": "cpu_seconds", "value": "0.100000",
             "timestamp": TS_MS, "attributes": {"k": "v"}}),
        (2, {"customer": "c-2", "meter": "cpu_seconds", "value": "123456789.012345",
             "timestamp": TS_MS}),
    ]
    ev = validate_event(got[1][1] | {"id": "x"})
    assert isinstance(ev, UsageEvent) and ev.value == Decimal("123456789.012345")


def test_parquet_mapping_int_and_string_values(tmp_path: Path) -> None:
    _parquet(tmp_path / "m.parquet", pa.table({
        "who": ["c-1", "c-1"], "meter": ["executions", "cpu_seconds"],
        "n": pa.array([3, None], pa.int32()), "ts": ["2026-11-05T12:00:00Z", TS],
    }))
    got = rows(tmp_path / "m.parquet", {"customer": "who", "value": "n", "timestamp": "ts"})
    assert got[0][1] == {"customer": "c-1", "meter": "executions", "value": 3, "timestamp": TS}
    assert "value" not in got[1][1]  # null -> missing_field at validation


def test_parquet_float_and_naive_timestamp_columns_are_refused(tmp_path: Path) -> None:
    _parquet(tmp_path / "f.parquet", pa.table({
        "customer": ["c-1", "c-2"], "meter": ["cpu_seconds"] * 2,
        "value": pa.array([0.1, None], pa.float64()),
        "timestamp": pa.array([TS_MS, TS_MS], pa.int64()),
    }))
    first, second = rows(tmp_path / "f.parquet")
    assert isinstance(first[1], RowError) and first[1].reason == "invalid_value"
    assert "decimal128 or string" in first[1].detail
    assert orjson.loads(first[1].original)["value"] == 0.1
    assert isinstance(second[1], dict)  # a null cell is not a float: missing_field later

    _parquet(tmp_path / "n.parquet", pa.table({
        "customer": ["c-1"], "meter": ["cpu_seconds"], "value": ["1"],
        "timestamp": pa.array([TS_MS], pa.timestamp("ms")),
    }))
    (_, err), = rows(tmp_path / "n.parquet")
    assert isinstance(err, RowError) and err.reason == "invalid_timestamp"


def test_derived_ids_are_deterministic_and_content_keyed(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.jsonl", tmp_path / "sub" / "renamed.jsonl", tmp_path / "c.jsonl"
    b.parent.mkdir()
    a.write_bytes(b'{"x":1}\n')
    b.write_bytes(b'{"x":1}\n')
    c.write_bytes(b'{"x":2}\n')
    da, db, dc = (content_digest(p, False) for p in (a, b, c))
    assert da == db != dc
    assert derived_event_id(da, 1) == derived_event_id(db, 1) == f"imp1_{da[:32]}_1"
    assert derived_event_id(da, 1) != derived_event_id(da, 2) != derived_event_id(dc, 2)
    assert len(derived_event_id(da, 10**9)) <= 128


def test_local_listing_skips_hidden_and_unfinished_files(tmp_path: Path) -> None:
    for name in ("b.csv", "a/x.jsonl.gz", ".hidden.csv", "y.csv.part", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    names = [(f.name, f.fmt, f.gz) for f in LocalSource(tmp_path).list_files()]
    assert names == [("a/x.jsonl.gz", "jsonl", True), ("b.csv", "csv", False)]
    forced = LocalSource(tmp_path / "notes.txt", forced="csv").list_files()
    assert [(f.name, f.fmt) for f in forced] == [("notes.txt", "csv")]


def test_checkpoint_round_trip_is_atomic_and_locked(tmp_path: Path) -> None:
    path = tmp_path / "ck.json"
    ck = Checkpoint.load(path)
    ck.lock()
    other = Checkpoint.load(path)
    with pytest.raises(Exception, match="in use"):
        other.lock()
    ck.advance("d1", 500)
    ck.finish("d2", "file:///x", 10)
    ck.digests["loc"] = "d2"
    ck.save()
    ck.unlock()
    again = Checkpoint.load(path)
    assert again.resume_after("d1") == 500 and again.resume_after("d2") == 0
    assert "d2" in again.done and again.digests == {"loc": "d2"}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
