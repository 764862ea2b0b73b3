"""The dispatcher: per-(customer, meter) queues in, Stripe calls out.

Kafka-free, so unit tests drive it with a small fake client. The sink submits work in
offset order; the dispatcher guarantees:

* **Order per pair.** Each (customer, meter) pair has a FIFO queue and at most one call in
  flight (:class:`~streams.sink.ratelimit.PairLocks`): summary n+1 of a pair is sent only
  after summary n was accepted or dead-lettered. In pre-aggregated mode that makes the
  newest total the last one Stripe receives.
* **Batching without breaking the pair rule.** When the client takes several events a
  call (v2 stream: 100), one call carries the head summary of up to 100 *different*
  ready pairs, and holds all their locks until it finishes: a pair is never in two calls,
  and two summaries of one pair never share a call (Stripe processes a v2 request
  asynchronously, so their order inside a request would not be guaranteed). A summary
  split into more parts than one call takes (v1) sends its parts one call after another.
* **Limits.** ``max_concurrency`` calls in flight (a slot is given back while a call
  backs off), and one token-bucket token per call.
* **Outcomes.** Each summary ends exactly once through ``on_finished`` (sent, zero,
  duplicate, dead_lettered), after ``dead_letter`` returned for DLQ'd ones. Retryable
  errors retry forever (see retry.py); a permanent error on a multi-summary call is
  retried one summary at a time to find the culprit, the others are then accepted.
* **A refused key (401, 403)** is nobody's summary's fault: nothing is dead-lettered or
  finished, no new call starts, and the refused calls probe slowly (auth.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from streams.config import MeterSettings
from streams.errors import (
    HeldForAuthError,
    PermanentSinkError,
    PlanError,
    RetryableSinkError,
)
from streams.sink.auth import AuthGate, is_auth_refusal
from streams.sink.kafka_io import Source
from streams.sink.metrics import SinkMetrics
from streams.sink.model import MeterEvent, MeterEventClient
from streams.sink.plan import (
    STRIPE_LIMITS,
    EngineLimits,
    Summary,
    build_events,
    plan_values,
)
from streams.sink.ratelimit import PairLocks, TokenBucket
from streams.sink.retry import retry_forever
from streams.util.backoff import Backoff

__all__ = ["DONE_IDS_MAX", "Dispatcher", "Work"]

log = logging.getLogger(__name__)

Pair = tuple[str, str]
# Finished summary ids remembered for in-process dedup. Forgetting one is harmless: the
# identifier is deterministic, so Stripe answers "already have it".
DONE_IDS_MAX = 500_000
# After a call timed out, Stripe may still be executing it: the retry waits at least this
# many client timeouts, so that two calls of one (customer, meter) are not in flight.
TIMEOUT_RETRY_FACTOR = 2.0


@dataclass(slots=True, eq=False)
class Work:
    """One summary on its way to Stripe."""

    summary: Summary
    raw: bytes
    source: Source
    stripe_customer_id: str = ""
    values: Sequence[tuple[str, Decimal]] = ()
    owner: object = None
    """Set by the sink: the offset tracker that was current when the work was read."""

    @property
    def pair(self) -> Pair:
        return (self.summary.customer, self.summary.meter)


@dataclass(slots=True)
class _Call:
    """Summaries that share one Stripe call (distinct pairs), plus ones needing none."""

    send: list[Work] = field(default_factory=list)
    zero: list[Work] = field(default_factory=list)
    duplicate: list[Work] = field(default_factory=list)
    refused: list[tuple[Work, PlanError]] = field(default_factory=list)
    n_events: int = 0

    def pairs(self) -> list[Pair]:
        works = self.send + self.zero + self.duplicate + [w for w, _ in self.refused]
        return [w.pair for w in works]


class Dispatcher:
    def __init__(
        self,
        client: MeterEventClient,
        meters: Mapping[str, MeterSettings],
        *,
        on_finished: Callable[[Work, str], None],
        dead_letter: Callable[[Work, str, str], Awaitable[None]],
        metrics: SinkMetrics,
        bucket: TokenBucket,
        max_concurrency: int,
        call_timeout_s: float,
        client_timeout_s: float | None = None,
        backoff: Backoff | None = None,
        escalate_after: int = 8,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        redact: Callable[[str], str] = lambda s: s,
        auth_retry_s: float = 60.0,
        limits: EngineLimits = STRIPE_LIMITS,
    ) -> None:
        self._client = client
        self._limits = limits
        self._meters = meters
        self._on_finished = on_finished
        self._dead_letter = dead_letter
        self._metrics = metrics
        self._bucket = bucket
        self._sem = asyncio.Semaphore(max_concurrency)
        self._call_timeout_s = call_timeout_s
        self._client_timeout_s = client_timeout_s
        self._backoff = backoff or Backoff()
        self._escalate_after = escalate_after
        self._clock_ms = clock_ms
        self._redact = redact
        self._max_batch = max(1, int(client.max_batch))
        self._queues: dict[Pair, deque[Work]] = {}
        self._ready: deque[Pair] = deque()
        self._in_ready: set[Pair] = set()
        self._locks = PairLocks()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._done_ids: dict[str, None] = {}
        self._queued = 0
        self.auth = AuthGate(metrics, auth_retry_s)

    # -- intake ---------------------------------------------------------------------------
    def is_done(self, summary_id: str) -> bool:
        return summary_id in self._done_ids

    def submit(self, work: Work) -> None:
        """Queue ``work`` behind earlier work of its pair (its customer must be mapped)."""
        pair = work.pair
        self._queues.setdefault(pair, deque()).append(work)
        self._queued += 1
        self._mark_ready(pair)

    def drop(self, keep: Callable[[Work], bool]) -> int:
        """Forget queued (not in-flight) work for which ``keep`` is False."""
        dropped = 0
        for pair in list(self._queues):
            queue = self._queues[pair]
            kept = deque(w for w in queue if keep(w))
            dropped += len(queue) - len(kept)
            if kept:
                self._queues[pair] = kept
            else:
                del self._queues[pair]
        self._queued -= dropped
        self._ready = deque(p for p in self._ready if p in self._queues)
        self._in_ready = set(self._ready)
        return dropped

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def _mark_ready(self, pair: Pair) -> None:
        if pair in self._queues and pair not in self._in_ready and not self._locks.busy(pair):
            self._ready.append(pair)
            self._in_ready.add(pair)
            self._wake.set()

    def _remember(self, summary_id: str) -> None:
        self._done_ids[summary_id] = None
        if len(self._done_ids) > DONE_IDS_MAX:
            del self._done_ids[next(iter(self._done_ids))]

    def _finish(self, work: Work, outcome: str) -> None:
        self._remember(work.summary.id)
        self._on_finished(work, outcome)

    # -- the loop -------------------------------------------------------------------------
    async def run(self) -> None:
        """Build calls from ready pairs and start them, until cancelled."""
        while True:
            while not self._ready:
                self._wake.clear()
                await self._wake.wait()
            # Not while holding a slot: the refused calls need slots to probe.
            await self.auth.wait_open()
            await self._sem.acquire()
            call = self._take_call()
            if not call.pairs():
                self._sem.release()
                continue
            task = asyncio.create_task(self._run_call(call))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take_call(self) -> _Call:
        """Pop the head summary of ready pairs until the call is full; lock their pairs."""
        call = _Call()
        while self._ready and call.n_events < self._max_batch:
            pair = self._ready[0]
            if pair not in self._queues:  # dropped while it waited
                self._ready.popleft()
                self._in_ready.discard(pair)
                continue
            work = self._queues[pair][0]
            if work.summary.id in self._done_ids:
                bucket = call.duplicate
            else:
                try:
                    work.values = plan_values(work.summary, self._meters[work.summary.meter],
                                              self._limits.max_digits)
                except PlanError as exc:
                    call.refused.append((work, exc))
                    bucket = None
                else:
                    if not work.values:
                        bucket = call.zero
                    elif call.send and call.n_events + len(work.values) > self._max_batch:
                        break  # does not fit: it heads the next call
                    else:
                        bucket = call.send
                        call.n_events += len(work.values)
            if bucket is not None:
                bucket.append(work)
            self._ready.popleft()
            self._in_ready.discard(pair)
            queue = self._queues[pair]
            queue.popleft()
            self._queued -= 1
            if not queue:
                del self._queues[pair]
            self._locks.try_acquire([pair])
        return call

    async def _run_call(self, call: _Call) -> None:
        """Finish every summary of ``call``; the concurrency slot is held on entry."""
        holding = True

        async def give_back() -> None:
            nonlocal holding
            holding = False
            self._sem.release()

        async def take_back() -> None:
            nonlocal holding
            await self._sem.acquire()
            holding = True

        try:
            for work in call.duplicate:
                self._finish(work, "duplicate")
            for work in call.zero:
                self._finish(work, "zero")
            for work, exc in call.refused:
                await self._dead_letter(work, exc.reason, exc.detail)
                self._finish(work, "dead_lettered")
            if call.send:
                await self._send_all(call.send, give_back, take_back)
        finally:
            if holding:
                self._sem.release()
            pairs = call.pairs()
            self._locks.release(pairs)
            for pair in pairs:
                self._mark_ready(pair)

    async def _send_all(
        self,
        works: list[Work],
        give_back: Callable[[], Awaitable[None]],
        take_back: Callable[[], Awaitable[None]],
    ) -> None:
        """Send ``works`` together; on a permanent error, one by one to find the culprit."""
        try:
            expired = await self._send(works, give_back, take_back)
        except PermanentSinkError as exc:
            if len(works) > 1:
                log.warning("stripe refused a call of %d summaries; retrying them one by one",
                            len(works))
                for work in works:
                    await self._send_all([work], give_back, take_back)
                return
            work = works[0]
            detail = self._redact(str(exc))
            log.warning("stripe refused summary customer=%s meter=%s partition=%d offset=%d: %s",
                        work.summary.customer, work.summary.meter, work.source.partition,
                        work.source.offset, detail)
            await self._dead_letter(work, f"{self._limits.name}_rejected", detail)
            self._finish(work, "dead_lettered")
            return
        for work in works:
            if work in expired:
                # Its window fell out of the engine's range while we were retrying.
                days = self._limits.max_past_s // 86_400
                await self._dead_letter(work, f"too_old_for_{self._limits.name}",
                                        f"window left {self._limits.name}'s {days}-day range "
                                        "while retrying")
                self._finish(work, "dead_lettered")
            else:
                self._finish(work, "sent")

    async def _send(
        self,
        works: list[Work],
        give_back: Callable[[], Awaitable[None]],
        take_back: Callable[[], Awaitable[None]],
    ) -> list[Work]:
        """One call (several for a split summary larger than a call), retried forever.

        Returns the summaries that became too old to send while retrying.
        """
        live = list(works)
        # A summary split in more parts than a call takes is sent in consecutive chunks.
        n_chunks = 1 if len(live) > 1 else -(-len(live[0].values) // self._max_batch)
        for chunk in range(n_chunks):

            async def attempt(chunk: int = chunk) -> None:
                events = self._events(live, chunk)
                if events:
                    await self._call(events)

            def on_retry(n: int, exc: RetryableSinkError, delay_s: float) -> None:
                if isinstance(exc, HeldForAuthError):
                    return  # the gate logged it at ERROR
                first = works[0].summary
                level = logging.ERROR if n + 1 >= self._escalate_after else logging.WARNING
                log.log(level, "stripe call of %d summaries failed (attempt %d), retrying in "
                        "%.2f s: %s (first customer=%s meter=%s)", len(live), n + 1, delay_s,
                        self._redact(str(exc)), first.customer, first.meter)

            try:
                await retry_forever(attempt, self._backoff, on_retry=on_retry,
                                    before_retry=give_back, after_wait=take_back)
            except PermanentSinkError as exc:
                if chunk == 0:
                    raise
                raise PermanentSinkError(
                    f"{exc} (parts of calls 1..{chunk} of {n_chunks} were already accepted)",
                    status=exc.status, code=exc.code,
                ) from exc
        return [w for w in works if w not in live]

    def _events(self, live: list[Work], chunk: int) -> list[MeterEvent]:
        """Events with timestamps valid now; summaries now too old leave ``live``."""
        now_ms = self._clock_ms()
        events: list[MeterEvent] = []
        for work in list(live):
            meter = self._meters[work.summary.meter]
            values = work.values
            if len(live) == 1 and len(values) > self._max_batch:
                values = values[chunk * self._max_batch : (chunk + 1) * self._max_batch]
            try:
                events.extend(build_events(work.summary, meter, work.stripe_customer_id,
                                           values, now_ms, self._limits))
            except PlanError:
                live.remove(work)
        return events

    async def _call(self, events: list[MeterEvent]) -> None:
        await self._bucket.acquire()
        started = time.perf_counter()
        outcome = "ok"
        try:
            async with asyncio.timeout(self._call_timeout_s):
                await self._client.send(events)
            self.auth.accepted()
        except PermanentSinkError as exc:
            if not is_auth_refusal(exc):
                outcome = "permanent"
                raise
            outcome = "auth"
            raise self.auth.refused(exc, self._redact(str(exc))) from exc
        except RetryableSinkError as exc:
            outcome = "retryable"
            elapsed = time.perf_counter() - started
            timeout_s = self._client_timeout_s
            if timeout_s and exc.retry_after_s is None and elapsed >= 0.9 * timeout_s:
                # It timed out, so Stripe may still be working on it: coming back too soon
                # would put two calls of these pairs in flight. Wait two timeouts' length.
                raise RetryableSinkError(str(exc),
                                         retry_after_s=TIMEOUT_RETRY_FACTOR * timeout_s) from exc
            raise
        except TimeoutError as exc:
            outcome = "retryable"
            client_s = self._client_timeout_s
            wait_s = TIMEOUT_RETRY_FACTOR * client_s if client_s else None
            raise RetryableSinkError("stripe call timed out (sink guard)",
                                     retry_after_s=wait_s) from exc
        except Exception as exc:  # an untranslated client error must not lose usage
            outcome = "retryable"
            log.exception("unexpected error from the meter event client")
            raise RetryableSinkError(f"unexpected client error: {type(exc).__name__}") from exc
        finally:
            self._metrics.stripe_requests.labels(outcome=outcome).inc()
            self._metrics.stripe_request_duration.observe(time.perf_counter() - started)

    # -- shutdown -------------------------------------------------------------------------
    async def close(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for calls in flight, then cancel the rest (they stay
        unfinished, so their offsets are not committed and a later run resends them)."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("abandoned %d stripe calls at shutdown", len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
