"""Row readers of JSON Lines, CSV and Parquet files: each yields ``(number, row)``.

``number`` is 1-based and strictly increasing within a file; with the file's content
digest it names the row for good (derived event ids, the checkpoint, rejects):

- JSON Lines: the line number (blank lines are counted and skipped);
- CSV: the physical line on which the record starts (the header is line 1);
- Parquet: the row's position in the file.

``row`` is a dict in usage event v1 wire form, ready for
:func:`streams.core.events.validate_event`, or a :class:`RowError` when the row cannot
even be turned into one (not JSON, wrong cell count, a float value column).

Mapping (``--map event_field=column``) renames source columns to event fields:
``id customer meter value timestamp attributes``, and ``attributes.NAME`` for one
attribute taken from a column. Unmapped fields are read from the column of their own name.

Exactness: no value ever passes through a binary float.

- CSV cells are text; ``value`` stays a decimal string (the contract's plain notation),
  a ``timestamp`` of digits only becomes integer epoch milliseconds.
- Parquet ``value`` columns may be integers, decimal128/256 or strings. A float32/float64
  column is refused row by row (``invalid_value``): a double cannot hold most decimal
  fractions, and guessing the intended decimal (shortest repr) would bill a number nobody
  wrote. Rewrite such a column as decimal or string.
- Parquet ``timestamp`` columns may be time-zone aware timestamps (converted to epoch ms,
  sub-millisecond digits truncated as the contract does), integers (epoch ms) or RFC 3339
  strings. A naive timestamp column is refused (``invalid_timestamp``), as the SDK refuses
  a naive datetime.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Final, Literal, cast

import orjson

__all__ = [
    "EVENT_FIELDS",
    "FileReader",
    "Format",
    "Row",
    "RowError",
    "RowReader",
    "detect_format",
    "parse_mapping",
    "read_rows",
]

Format = Literal["jsonl", "csv", "parquet"]

EVENT_FIELDS: Final = ("id", "customer", "meter", "value", "timestamp", "attributes")
_SCALAR_FIELDS: Final = ("id", "customer", "meter", "value", "timestamp")
_ATTR_PREFIX: Final = "attributes."
_EXTENSIONS: Final[dict[str, Format]] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet", ".pq": "parquet",
}
_PARQUET_BATCH_ROWS: Final = 65_536


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that is not an event at all; ``reason`` is a contract rejection reason."""

    reason: str
    detail: str
    original: bytes


Row = tuple[int, "dict[str, Any] | RowError"]
RowReader = Callable[[IO[bytes], Format, Mapping[str, str]], Iterator[Row]]
"""The signature of :func:`read_rows`; another file layout provides its own."""


def detect_format(name: str) -> tuple[Format | None, bool]:
    """(format by extension or None, gzip?) of a file name; ``x.csv.gz`` -> ("csv", True)."""
    lower = name.lower()
    gz = lower.endswith(".gz")
    if gz:
        lower = lower[:-3]
    for ext, fmt in _EXTENSIONS.items():
        if lower.endswith(ext):
            return fmt, gz
    return None, gz


def parse_mapping(items: list[str]) -> dict[str, str]:
    """``["value=amount", ...]`` -> ``{"value": "amount"}``; raise ValueError on bad items."""
    mapping: dict[str, str] = {}
    for item in items:
        field, sep, column = item.partition("=")
        field, column = field.strip(), column.strip()
        if not sep or not column:
            raise ValueError(f"--map {item!r}: expected event_field=column")
        if field not in EVENT_FIELDS and not (
            field.startswith(_ATTR_PREFIX) and len(field) > len(_ATTR_PREFIX)
        ):
            raise ValueError(
                f"--map {item!r}: unknown event field {field!r} (one of "
                f"{', '.join(EVENT_FIELDS)}, or attributes.NAME)"
            )
        mapping[field] = column
    return mapping


def read_rows(stream: IO[bytes], fmt: Format, mapping: Mapping[str, str]) -> Iterator[Row]:
    """The rows of a decompressed binary stream (Parquet needs it seekable)."""
    if fmt == "jsonl":
        return _jsonl_rows(stream, mapping)
    if fmt == "csv":
        return _csv_rows(stream, mapping)
    return _parquet_rows(stream, mapping)


# -- JSON Lines -------------------------------------------------------------------------


def _jsonl_rows(stream: IO[bytes], mapping: Mapping[str, str]) -> Iterator[Row]:
    renames = [(f, c) for f, c in mapping.items() if f != c and not f.startswith(_ATTR_PREFIX)]
    attr_columns = [(f[len(_ATTR_PREFIX):], c) for f, c in mapping.items()
                    if f.startswith(_ATTR_PREFIX)]
    loads = orjson.loads
    number = 0
    for line in stream:
        number += 1
        if line.isspace() or not line:
            continue
        try:
            obj = loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, RowError("invalid_json", f"not UTF-8 JSON: {str(exc)[:200]}",
                                   line.rstrip(b"\r\n"))
            continue
        if type(obj) is not dict:
            yield number, RowError("invalid_shape", "a line must hold one JSON object",
                                   line.rstrip(b"\r\n"))
            continue
        if renames or attr_columns:
            obj = _rename(obj, renames, attr_columns)
        yield number, obj


def _rename(obj: dict[str, Any], renames: list[tuple[str, str]],
            attr_columns: list[tuple[str, str]]) -> dict[str, Any]:
    taken = {c: obj.pop(c) for _, c in renames if c in obj}
    for field, column in renames:
        if column in taken:
            obj[field] = taken[column]
    for name, column in attr_columns:
        if column in obj:
            attrs = obj.setdefault("attributes", {})
            if type(attrs) is dict:
                attrs[name] = obj.pop(column)
    return obj


# -- CSV --------------------------------------------------------------------------------


def _csv_rows(stream: IO[bytes], mapping: Mapping[str, str]) -> Iterator[Row]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        return
    index = {name.strip(): i for i, name in enumerate(header)}
    scalar = [(f, index.get(mapping.get(f, f))) for f in _SCALAR_FIELDS]
    scalar_at = [(f, i) for f, i in scalar if i is not None]
    attrs_json_at = index.get(mapping.get("attributes", "attributes"))
    attr_at: list[tuple[str, int]] = [
        (name[len(_ATTR_PREFIX):], index[name]) for name in index
        if name.startswith(_ATTR_PREFIX) and name not in mapping.values()
    ]
    for field, column in mapping.items():
        if field.startswith(_ATTR_PREFIX) and column in index:
            attr_at.append((field[len(_ATTR_PREFIX):], index[column]))
    width = len(header)
    next_line = reader.line_num + 1
    for cells in reader:
        number, next_line = next_line, reader.line_num + 1
        if not cells:
            continue
        if len(cells) != width:
            yield number, RowError(
                "invalid_shape", f"row has {len(cells)} cells, the header has {width}",
                orjson.dumps(cells))
            continue
        obj: dict[str, Any] = {}
        for field, i in scalar_at:
            cell = cells[i]
            if cell == "":
                continue
            if field == "value":
                cell = cell.strip()
            elif field == "timestamp":
                cell = cell.strip()
                if cell.isascii() and cell.isdigit():
                    obj[field] = int(cell)
                    continue
            obj[field] = cell
        attrs: dict[str, Any] | None = None
        if attrs_json_at is not None and cells[attrs_json_at].strip():
            try:
                parsed = orjson.loads(cells[attrs_json_at])
            except orjson.JSONDecodeError:
                parsed = cells[attrs_json_at]  # validate_event names the problem
            obj["attributes"] = parsed
            attrs = parsed if type(parsed) is dict else None
        for name, i in attr_at:
            if cells[i] != "":
                if attrs is None:
                    attrs = obj["attributes"] = {}
                attrs[name] = cells[i]
        yield number, obj


# -- Parquet ----------------------------------------------------------------------------


def _parquet_rows(stream: IO[bytes], mapping: Mapping[str, str]) -> Iterator[Row]:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    pf = pq.ParquetFile(stream)
    schema = pf.schema_arrow
    names = set(schema.names)
    columns: dict[str, str] = {}
    for field in EVENT_FIELDS:
        column = mapping.get(field, field)
        if column in names:
            columns[field] = column
    attr_columns = {
        f[len(_ATTR_PREFIX):]: c for f, c in mapping.items()
        if f.startswith(_ATTR_PREFIX) and c in names
    }
    wanted = sorted({*columns.values(), *attr_columns.values()})
    number = 0
    for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=wanted):
        values: dict[str, list[Any]] = {}
        errors: dict[str, RowError] = {}
        for field, column in columns.items():
            arr = batch.column(column)
            converted = _parquet_column(pa, field, column, arr)
            if isinstance(converted, RowError):
                errors[field] = converted
                values[field] = arr.to_pylist()
            else:
                values[field] = converted
        attr_values = {name: batch.column(c).to_pylist() for name, c in attr_columns.items()}
        for i in range(batch.num_rows):
            number += 1
            obj: dict[str, Any] = {}
            for field, col in values.items():
                v = col[i]
                if v is not None:
                    obj[field] = v
            for name, col in attr_values.items():
                if col[i] is not None:
                    obj.setdefault("attributes", {})[name] = str(col[i])
            error = next((e for f, e in errors.items() if f in obj), None)
            if error is not None:
                yield number, RowError(error.reason, error.detail,
                                       orjson.dumps(obj, default=str))
                continue
            yield number, obj


def _parquet_column(pa: Any, field: str, column: str, arr: Any) -> list[Any] | RowError:
    """The column as wire-form Python values, or why every non-null cell is refused."""
    t = arr.type
    types = pa.types
    if field == "value":
        if types.is_floating(t):
            return RowError(
                "invalid_value",
                f"column {column!r} is a Parquet {t} (binary floating point), which cannot "
                "hold most decimal fractions exactly; write it as decimal128 or string",
                b"")
        if types.is_decimal(t):
            return [None if d is None else _plain(d) for d in arr.to_pylist()]
        return list(arr.to_pylist())
    if field == "timestamp" and types.is_timestamp(t):
        if t.tz is None:
            return RowError(
                "invalid_timestamp",
                f"column {column!r} is a timestamp without time zone; write it with a time "
                "zone (UTC) or as epoch milliseconds",
                b"")
        per_ms = {"s": None, "ms": 1, "us": 1000, "ns": 1_000_000}[t.unit]
        ints = arr.cast(pa.int64()).to_pylist()
        if per_ms is None:
            return [None if v is None else v * 1000 for v in ints]
        return [None if v is None else v // per_ms for v in ints]
    if field == "id" and types.is_integer(t):
        return [None if v is None else str(v) for v in arr.to_pylist()]
    if field == "attributes" and types.is_map(t):
        return [None if v is None else dict(v) for v in arr.to_pylist()]
    if field == "attributes" and types.is_string(t):
        return [None if v is None else _json_or_text(v) for v in arr.to_pylist()]
    return list(arr.to_pylist())


def _plain(d: Decimal) -> str:
    return format(d, "f")


def _json_or_text(text: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


class FileReader:
    """A local file opened for :func:`read_rows`, gzip decompressed when ``gz``.

    ``bytes_read`` is the position in the file as stored (compressed bytes for ``.gz``),
    for progress; Parquet reads its footer first, so there it jumps around.
    """

    def __init__(self, path: Path, fmt: Format, gz: bool, mapping: Mapping[str, str],
                 read: RowReader | None = None) -> None:
        self.path, self.fmt, self.gz, self.mapping = path, fmt, gz, mapping
        self._read: RowReader = read or read_rows
        self._raw: IO[bytes] | None = None

    def __enter__(self) -> FileReader:
        self._raw = self.path.open("rb")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._raw is not None:
            self._raw.close()

    @property
    def bytes_read(self) -> int:
        return self._raw.tell() if self._raw is not None and not self._raw.closed else 0

    def rows(self) -> Iterator[Row]:
        assert self._raw is not None, "use FileReader as a context manager"
        stream: IO[bytes] = self._raw
        if self.gz:
            stream = cast("IO[bytes]", gzip.GzipFile(fileobj=self._raw, mode="rb"))
            if self.fmt == "parquet":
                # Parquet reads its footer first: it needs a seekable, decompressed stream.
                stream = io.BytesIO(stream.read())
        return self._read(stream, self.fmt, self.mapping)
