"""``meterstream import``: bulk import and backfill of usage events from files.

For each file of the source, in name order:

1. digest the content (cached per locator in the checkpoint); a file whose digest the
   checkpoint lists as done is skipped;
2. read its rows, skipping those up to the checkpoint's offset for it; give a row without
   an id the derived id ``imp1_<digest>_<row>`` (:func:`streams.importer.sources.
   derived_event_id`); validate it against usage event v1;
3. hand a valid event to the producer SDK (packed per customer), a refused row to the
   reject sink (events DLQ or ``--rejects`` file), and skip an event whose
   (customer, id) this run already sent (counted as a duplicate);
4. every ``commit_every_rows`` rows or ``commit_every_s`` seconds, and at the end of the
   file, commit in this order: ``producer.flush()`` (every event so far acknowledged by
   Kafka, or fsynced in the producer's spool, which lives next to the checkpoint and is
   replayed by the next run), ``rejects.flush()``, then the checkpoint (atomic replace).
   Only then does the checkpoint claim those rows.

So an import that is killed resumes at its last commit and sends the rows after it again,
with the same ids: nothing is lost, and nothing is billed twice as long as the aggregator
still dedups those ids.

Limits of "no double billing"
-----------------------------
- The checkpoint makes a re-run skip whole files it finished (by content, under any name)
  and the rows of a partial file up to the last commit. Without ``--checkpoint`` nothing
  is skipped across runs.
- The rows re-sent after a crash (at most one commit interval), and any file imported
  again without the checkpoint, rely on the aggregator's dedup on (customer, id). That
  dedup keeps ids per event-time hour for ``dedup_horizon_s`` (48 h) behind the watermark:
  a backfilled event whose event time is older than the horizon relative to the
  partition's watermark is *not* deduplicated there, so a re-send of such rows bills them
  again. Keep the checkpoint for backfills of old data.
- Duplicates within one run (same customer and id twice) are dropped here before sending;
  the memory for that grows with the number of rows carrying their own id.
- A file changed in place gets a new digest: it is a new file, its id-less rows new ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import os
import signal
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from streams.config import Settings
from streams.core.events import Rejection, UsageEvent, validate_event
from streams.errors import ImportSourceError
from streams.importer.checkpoint import Checkpoint
from streams.importer.formats import FileReader, Format, RowError, read_rows
from streams.importer.progress import ImportProgress
from streams.importer.rejects import DlqRejects, FileRejects, Reject, RejectSink
from streams.importer.sources import Source, SourceFile, content_digest, open_source
from streams.importer.stripe_layout import StripeLayout, invert_customers
from streams.sdk.encode import Prepared
from streams.sdk.producer import UsageProducer

__all__ = ["ImportOptions", "ImportSummary", "Importer", "run_import"]

log = logging.getLogger(__name__)

_CHECK_EVERY_ROWS = 512  # rows between backpressure checks, yields and stop checks


@dataclass(frozen=True)
class ImportOptions:
    """What ``meterstream import`` was asked to do."""

    source: str
    fmt: Format | None = None  # None: by extension
    mapping: Mapping[str, str] = field(default_factory=dict)
    rejects_path: Path | None = None  # None: the events DLQ topic
    checkpoint_path: Path | None = None
    watch: bool = False
    interval_s: float = 10.0
    pack: int = 1000  # events per packed record; 1: one record per event
    endpoint_url: str | None = None
    commit_every_rows: int = 50_000
    commit_every_s: float = 2.0
    progress: bool = True
    # "stripe": Stripe's S3 connector layout (streams.importer.stripe_layout).
    layout: Literal["meterstream", "stripe"] = "meterstream"
    stripe_customer_as_id: bool = False
    stripe_value_key: str = "value"


@dataclass
class ImportSummary:
    """Counts of one run. ``imported`` includes rows re-sent after a resume."""

    rows_read: int = 0
    imported: int = 0
    rejected: int = 0
    duplicates: int = 0
    files_done: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        rate = self.rows_read / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return {"rows_read": self.rows_read, "imported": self.imported,
                "rejected": self.rejected, "duplicates": self.duplicates,
                "files_done": self.files_done, "files_skipped": self.files_skipped,
                "files_failed": self.files_failed, "elapsed_s": round(self.elapsed_s, 3),
                "rows_per_s": round(rate, 1), "interrupted": self.interrupted}


class Importer:
    """One import run; see the module docstring for the order of steps."""

    def __init__(self, settings: Settings, options: ImportOptions, *,
                 source: Source | None = None, producer: UsageProducer | None = None,
                 rejects: RejectSink | None = None) -> None:
        if not 1 <= options.pack <= 10_000:
            raise ValueError("--pack must be within 1..10000")
        self.settings = settings
        self.options = options
        self.source = source or open_source(options.source, options.fmt, options.endpoint_url)
        self.checkpoint = Checkpoint.load(options.checkpoint_path)
        self.producer = producer or self._make_producer()
        if rejects is None:
            rejects = (FileRejects(options.rejects_path) if options.rejects_path is not None
                       else DlqRejects(settings.kafka, settings.topics.events_dlq))
        self.rejects = rejects
        self.summary = ImportSummary()
        self.progress = ImportProgress(enabled=options.progress)
        self._stripe: StripeLayout | None = None
        if options.layout == "stripe":
            self._stripe = StripeLayout(
                event_meters={m.stripe_event_name: m.name for m in settings.meters},
                customer_as_id=options.stripe_customer_as_id,
                value_key=options.stripe_value_key)
        self._seen: set[str] = set()  # customer \x1f id of rows with their own id
        self._skipped: set[str] = set()  # locators of files skipped as already done
        self._stop = asyncio.Event()

    def _make_producer(self) -> UsageProducer:
        ckpt = self.options.checkpoint_path
        kafka = self.settings.kafka.model_copy(
            update={"client_id": f"{self.settings.kafka.client_id}-import"})
        pack = self.options.pack
        return UsageProducer(
            kafka, self.settings.topics.events, pack=pack > 1,
            pack_max_events=pack if pack > 1 else 1000,
            # A backfill has no latency goal: let packs of many customers fill up (they
            # are closed by the 8 MiB pack buffer, at latest here, and at every commit).
            pack_max_ms=1000,
            spool_dir=ckpt.with_name(ckpt.name + ".spool") if ckpt is not None else None,
        )

    def stop(self) -> None:
        """Finish the current commit interval's work and stop (signal handlers call it)."""
        self._stop.set()

    async def run(self) -> ImportSummary:
        started = time.monotonic()
        self.checkpoint.lock()
        self.progress.start()
        try:
            await self.rejects.start()
            await self.producer.start()
            with tempfile.TemporaryDirectory(prefix="meterstream-import-") as workdir:
                await self._loop(Path(workdir))
        finally:
            try:
                await self.producer.close()
                await self.rejects.close()
            finally:
                self.progress.stop()
                self.checkpoint.unlock()
                self.summary.elapsed_s = time.monotonic() - started
        return self.summary

    async def _loop(self, workdir: Path) -> None:
        previous: set[str] = set()
        while not self._stop.is_set():
            files = await asyncio.to_thread(self.source.list_files)
            if self.options.watch and self.source.settles:
                # A local file still being written would be imported half: wait until a
                # file looks the same (size, mtime) in two consecutive listings.
                listed = {f.locator for f in files}
                files = [f for f in files if f.locator in previous]
                previous = listed
            if files and self._stripe is not None and not self._stripe.customer_as_id:
                # Once per listing, so that --watch sees customers added meanwhile.
                self._stripe.customers = invert_customers(
                    await load_stripe_customer_ids(self.settings))
            todo = []
            for f in files:
                if self.checkpoint.digests.get(f.locator) not in self.checkpoint.done:
                    todo.append(f)
                elif f.locator not in self._skipped:  # done in an earlier run
                    self._skipped.add(f.locator)
                    self.summary.files_skipped += 1
            self.progress.add_work(len(todo), sum(f.size for f in todo))
            for f in todo:
                if self._stop.is_set():
                    break
                await self._import_file(f, workdir)
            if not self.options.watch:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.options.interval_s)
        self.summary.interrupted = self._stop.is_set() and not self.options.watch

    async def _import_file(self, f: SourceFile, workdir: Path) -> None:
        try:
            with contextlib.ExitStack() as stack:
                path = await asyncio.to_thread(stack.enter_context,
                                               self.source.local_copy(f, workdir))
                digest = self.checkpoint.digests.get(f.locator)
                if digest is None:
                    digest = await asyncio.to_thread(content_digest, path, f.gz)
                    self.checkpoint.digests[f.locator] = digest
                if digest in self.checkpoint.done:
                    log.info("skipping %s: already imported (%s)", f.uri,
                             self.checkpoint.done[digest].get("file"))
                    self.summary.files_skipped += 1
                    self._skipped.add(f.locator)
                    self.progress.file_done(f.size)
                    return
                await self._read_file(f, path, digest)
        except (OSError, EOFError, ValueError, csv.Error, ImportSourceError) as exc:
            # The rows read so far are committed (or will be re-read): go on with the next
            # file; the run's exit status reports the failure.
            log.error("cannot import %s: %s: %s", f.uri, type(exc).__name__, exc)
            self.summary.files_failed += 1

    async def _read_file(self, f: SourceFile, path: Path, digest: str) -> None:
        """Import one file's rows after the checkpoint's offset; commit as we go."""
        opts, summary, producer, rejects = self.options, self.summary, self.producer, self.rejects
        resume = self.checkpoint.resume_after(digest)
        if resume:
            log.info("resuming %s after row %d", f.uri, resume)
        prefix = f"imp1_{digest[:32]}_"  # derived_event_id, inlined on the hot path
        seen, accept, dumps = self._seen, producer.accept, orjson.dumps
        last = resume
        base, n = summary.rows_read, 0
        next_check = _CHECK_EVERY_ROWS
        next_commit_rows = opts.commit_every_rows
        next_commit_at = time.monotonic() + opts.commit_every_s
        uri = f.uri
        read = self._stripe.read_rows if self._stripe is not None else read_rows
        with FileReader(path, f.fmt, f.gz, opts.mapping, read) as reader:
            for number, row in reader.rows():
                if number <= resume:
                    continue
                last = number
                n += 1
                if type(row) is dict:
                    derived = row.get("id") is None
                    if derived:
                        row["id"] = prefix + str(number)
                    event = validate_event(row)
                    if type(event) is UsageEvent:
                        customer = event.customer
                        if not derived:
                            key = customer + "\x1f" + event.id
                            if key in seen:
                                summary.duplicates += 1
                                continue
                            seen.add(key)
                        accept(Prepared(event.id, customer, customer.encode(), dumps(row)))
                        summary.imported += 1
                    else:
                        assert isinstance(event, Rejection)
                        if derived:
                            del row["id"]
                        key_of = row.get("customer")
                        rejects.write(Reject(uri, number, event.reason, event.detail,
                                             dumps(row, default=str),
                                             key_of if type(key_of) is str else None))
                        summary.rejected += 1
                else:
                    assert isinstance(row, RowError)
                    rejects.write(Reject(uri, number, row.reason, row.detail, row.original,
                                         None))
                    summary.rejected += 1
                if n >= next_check:
                    next_check = n + _CHECK_EVERY_ROWS
                    summary.rows_read = base + n
                    await producer.wait_accepted()
                    await asyncio.sleep(0)  # let the shipper and timers run
                    self.progress.update(summary.rows_read, reader.bytes_read)
                    if self._stop.is_set():
                        break
                    if n >= next_commit_rows or time.monotonic() >= next_commit_at:
                        await self._commit(digest, last)
                        next_commit_rows = n + opts.commit_every_rows
                        next_commit_at = time.monotonic() + opts.commit_every_s
            summary.rows_read = base + n
        if self._stop.is_set():
            await self._commit(digest, last)
            log.info("stopped in %s after row %d", uri, last)
            return
        await self._commit(digest, last, finished=f)
        summary.files_done += 1
        self.progress.file_done(f.size)
        log.info("imported %s: %d rows", uri, last)

    async def _commit(self, digest: str, last: int, finished: SourceFile | None = None
                      ) -> None:
        """Claim rows up to ``last`` in the checkpoint, once they are durable elsewhere."""
        await self.producer.flush()  # acknowledged by Kafka (or fsynced in the spool)
        await self.rejects.flush()   # dead letters acknowledged / reject file fsynced
        if finished is not None:
            self.checkpoint.finish(digest, finished.uri, last)
        else:
            self.checkpoint.advance(digest, last)
        self.checkpoint.save()


async def load_stripe_customer_ids(settings: Settings) -> dict[str, str]:
    """Our customer -> Stripe customer id, from the whole customers topic."""
    from streams.sink.customers import CustomerDirectory, parse_customer_record
    from streams.sink.kafka_io import read_to_end

    directory = CustomerDirectory()
    async for record in read_to_end(settings.kafka, settings.topics.customers,
                                    client_id=f"{settings.kafka.client_id}-import"):
        parsed = parse_customer_record(record.key, record.value)
        if parsed is not None:
            directory.apply(*parsed)
    return {c: sid for c in directory.customers() if (sid := directory.get(c)) is not None}


def run_import(settings: Settings, options: ImportOptions) -> int:
    """Run an import to its end (or until SIGINT/SIGTERM); print the summary.

    Exit status: 0 done (rejected rows included), 1 some file could not be read,
    130 a one-shot import was interrupted (it resumes from its checkpoint).
    """
    from rich.console import Console

    async def main() -> ImportSummary:
        importer = Importer(settings, options)
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            log.info("stopping: finishing the current commit")
            importer.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal kills
                loop.remove_signal_handler(sig)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        return await importer.run()

    summary = asyncio.run(main())
    doc = summary.as_dict()
    Console(stderr=True).print(
        f"[bold]import summary[/]: {doc['imported']:,} imported, {doc['rejected']:,} "
        f"rejected, {doc['duplicates']:,} duplicate; {doc['files_done']} file(s) done, "
        f"{doc['files_skipped']} skipped, {doc['files_failed']} failed; "
        f"{doc['rows_per_s']:,.0f} rows/s", highlight=False, soft_wrap=True)
    os.write(1, orjson.dumps(doc) + b"\n")
    if summary.files_failed:
        return 1
    return 130 if summary.interrupted else 0
