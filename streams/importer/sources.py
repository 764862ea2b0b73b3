"""Where import files come from: a local file or directory, or an S3 prefix.

A :class:`Source` lists :class:`SourceFile` entries (sorted by name, so every run walks
them in the same order) and hands out a local path to read each one: the file itself, or
for S3 a temporary download that is deleted afterwards. The download asks for the ETag
that was listed (``IfMatch``), so the bytes read are the bytes listed.

File identity
-------------
A file is identified by :func:`content_digest`: the SHA-256 of its *decompressed* bytes
(a ``.gz`` file and its plain twin are the same file). It survives renames, moves,
re-listing, copying to or from S3 and re-compression, and it is what derived event ids,
the checkpoint's ``done`` set and its resume offsets are keyed on. Two files with
identical content are one file: the second is skipped, which is right for a re-upload and
is the documented rule otherwise (rows carrying their own ids are unaffected by it; only
rows without an id need the content to name them). Hashing costs one extra read of each
file; the checkpoint remembers the digest per :attr:`SourceFile.locator` (uri, size and
mtime or ETag) so that re-listing in ``--watch`` mode does not re-hash.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from streams.errors import ImportSourceError
from streams.importer.formats import Format, detect_format

__all__ = [
    "LocalSource",
    "S3Source",
    "Source",
    "SourceFile",
    "content_digest",
    "derived_event_id",
    "open_source",
]

log = logging.getLogger(__name__)

_CHUNK: Final = 1 << 20
# Names a writer uses while a file is incomplete (write, then rename into place).
_IN_PROGRESS_SUFFIXES: Final = (".tmp", ".part", ".partial", ".crdownload", "_COPYING_")


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file to import.

    uri: ``file:///abs/path`` or ``s3://bucket/key``; shown in rejects and dead letters.
    name: the path relative to the source root (``a/b.csv.gz``), or the file name.
    size: bytes as stored.
    version: ``mtime_ns`` of a local file, the ETag of an S3 object.
    fmt, gz: how to read it.
    """

    uri: str
    name: str
    size: int
    version: str
    fmt: Format
    gz: bool

    @property
    def locator(self) -> str:
        """Changes whenever the content may have: the key of the digest cache."""
        return f"{self.uri}|{self.size}|{self.version}"


class Source(Protocol):
    """What the importer needs from a place holding files."""

    root: str
    settles: bool  # True: a listed file may still be growing (local files)

    def list_files(self) -> list[SourceFile]: ...

    def local_copy(self, f: SourceFile, workdir: Path) -> contextlib.AbstractContextManager[Path]:
        ...


def derived_event_id(digest: str, number: int) -> str:
    """The id of a row without one: ``imp1_<first 32 hex of the content digest>_<row>``.

    Deterministic: the same content and row number give the same id in every run, on
    every machine; and readable: an id leads back to its file and row.
    """
    return f"imp1_{digest[:32]}_{number}"


def content_digest(path: Path, gz: bool) -> str:
    """SHA-256 (hex) of the file's decompressed content, streamed."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as raw:
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
            while chunk := stream.read(_CHUNK):
                h.update(chunk)
    except (OSError, EOFError) as exc:
        raise ImportSourceError(f"cannot read {path}: {exc}") from exc
    return h.hexdigest()


def _choose_format(name: str, forced: Format | None) -> tuple[Format | None, bool]:
    fmt, gz = detect_format(name)
    return (forced or fmt), gz


class LocalSource:
    """A local file, or every file with a known extension below a directory."""

    settles = True

    def __init__(self, root: Path, forced: Format | None = None) -> None:
        self.root = str(root)
        self._path = root
        self._forced = forced

    def list_files(self) -> list[SourceFile]:
        path = self._path
        if path.is_file():
            fmt, gz = _choose_format(path.name, self._forced)
            if fmt is None:
                raise ImportSourceError(
                    f"{path}: unknown format (extension .jsonl, .csv or .parquet, optionally "
                    ".gz); pass --format")
            return [self._entry(path, path.name, fmt, gz)]
        if not path.is_dir():
            raise ImportSourceError(f"{path}: no such file or directory")
        out = []
        for p in sorted(path.rglob("*")):
            rel = p.relative_to(path).as_posix()
            if (any(part.startswith(".") for part in p.relative_to(path).parts)
                    or rel.endswith(_IN_PROGRESS_SUFFIXES) or not p.is_file()):
                continue
            fmt, gz = _choose_format(p.name, self._forced)
            if fmt is None:
                log.debug("skipping %s: unknown extension", rel)
                continue
            out.append(self._entry(p, rel, fmt, gz))
        return out

    @staticmethod
    def _entry(p: Path, name: str, fmt: Format, gz: bool) -> SourceFile:
        st = p.stat()
        return SourceFile(p.resolve().as_uri(), name, st.st_size, str(st.st_mtime_ns), fmt, gz)

    @contextlib.contextmanager
    def local_copy(self, f: SourceFile, workdir: Path) -> Iterator[Path]:
        path = self._path if self._path.is_file() else self._path / f.name
        yield path


class S3Source:
    """Every object below ``s3://bucket/prefix`` with a known extension.

    The client is boto3's: region and credentials from the usual AWS environment and
    config files, the endpoint from ``endpoint_url`` or ``AWS_ENDPOINT_URL``.
    """

    settles = False  # an S3 object appears complete, never half-written

    def __init__(self, uri: str, forced: Format | None = None,
                 endpoint_url: str | None = None) -> None:
        rest = uri.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ImportSourceError(f"{uri}: expected s3://bucket/prefix")
        self.root = uri
        self.bucket, self.prefix = bucket, prefix
        self._forced = forced
        import boto3  # type: ignore[import-untyped]

        self._client: Any = boto3.client(
            "s3", endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None)

    def list_files(self) -> list[SourceFile]:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        out = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for obj in page.get("Contents", ()):
                    key: str = obj["Key"]
                    if key.endswith("/"):
                        continue
                    rel = key[len(self.prefix):].lstrip("/") or key.rsplit("/", 1)[-1]
                    fmt, gz = _choose_format(key.rsplit("/", 1)[-1], self._forced)
                    if fmt is None:
                        log.debug("skipping s3://%s/%s: unknown extension", self.bucket, key)
                        continue
                    out.append(SourceFile(f"s3://{self.bucket}/{key}", rel, int(obj["Size"]),
                                          str(obj["ETag"]), fmt, gz))
        except (BotoCoreError, ClientError) as exc:
            raise ImportSourceError(f"cannot list {self.root}: {exc}") from exc
        return sorted(out, key=lambda f: f.name)

    @contextlib.contextmanager
    def local_copy(self, f: SourceFile, workdir: Path) -> Iterator[Path]:
        from botocore.exceptions import BotoCoreError, ClientError

        key = f.uri[len(f"s3://{self.bucket}/"):]
        fd, name = tempfile.mkstemp(prefix="import-", suffix=".part", dir=workdir)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    body = self._client.get_object(
                        Bucket=self.bucket, Key=key, IfMatch=f.version)["Body"]
                    while chunk := body.read(_CHUNK):
                        out.write(chunk)
                except (BotoCoreError, ClientError) as exc:
                    raise ImportSourceError(f"cannot read {f.uri}: {exc}") from exc
            yield path
        finally:
            path.unlink(missing_ok=True)


def open_source(root: str, forced: Format | None = None,
                endpoint_url: str | None = None) -> Source:
    """The source named by ``root``: ``s3://bucket/prefix``, or a local path."""
    if root.startswith("s3://"):
        return S3Source(root, forced, endpoint_url)
    return LocalSource(Path(root), forced)
