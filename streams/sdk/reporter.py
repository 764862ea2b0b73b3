"""UsageReporter: the blocking facade of :class:`streams.sdk.producer.UsageProducer`.

For threaded code (notebook kernels, training loops, query executors). One background
thread runs an event loop that owns a :class:`UsageProducer`; any thread may call
:meth:`UsageReporter.report`. Events are validated in the caller's thread (so a bad event
raises where it was reported), then handed to the loop through a lock-free queue with
one wake-up per burst. Events from one thread keep their order.

The reporter registers itself with :mod:`atexit` so a normal interpreter exit flushes and
closes it (events not acknowledged by then stay in the spool, see streams.sdk.producer).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from streams.config import KafkaSettings, Settings
from streams.errors import ProducerError
from streams.sdk.encode import EventValue, Prepared, Timestamp, prepare_event
from streams.sdk.producer import UsageProducer

__all__ = ["UsageReporter"]

log = logging.getLogger(__name__)

_Item = tuple[Prepared | None, "concurrent.futures.Future[None] | None"]
# Closing is queued behind everything reported before it.
_CLOSE = Prepared("", "", b"", b"")


class UsageReporter:
    """Thread-safe, blocking usage reporting; takes the options of :class:`UsageProducer`."""

    def __init__(
        self,
        kafka: KafkaSettings | None = None,
        topic: str = "usage.events",
        *,
        start_timeout_s: float = 60.0,
        **options: Any,
    ) -> None:
        self._inbox: deque[_Item] = deque()
        self._lock = threading.Lock()
        self._wake_scheduled = False
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="meterstream-reporter", daemon=True)
        self._thread.start()
        self._wake: asyncio.Event | None = None
        self._pump_task: asyncio.Task[None] | None = None
        started = asyncio.run_coroutine_threadsafe(
            self._start(kafka, topic, options), self._loop)
        try:
            self._producer = started.result(start_timeout_s)
        except BaseException:
            self._stop_thread()
            raise
        atexit.register(self.close)

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> UsageReporter:
        """A reporter for ``settings.kafka`` and the events topic of ``settings.topics``."""
        return cls(settings.kafka, settings.topics.events, **options)

    async def _start(self, kafka: KafkaSettings | None, topic: str,
                     options: dict[str, Any]) -> UsageProducer:
        producer = UsageProducer(kafka, topic, **options)
        await producer.start()
        self._wake = asyncio.Event()
        self._pump_task = asyncio.get_running_loop().create_task(self._pump(producer))
        return producer

    @property
    def producer(self) -> UsageProducer:
        """The underlying producer (only to be touched from the reporter's loop)."""
        return self._producer

    # -- any thread ------------------------------------------------------------------

    def report(
        self,
        customer: str,
        meter: str,
        value: EventValue,
        *,
        timestamp: Timestamp = None,
        id: str | None = None,  # the contract's field name
        attributes: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> str:
        """Validate one event, wait until the producer has taken it; return its id."""
        prepared = prepare_event(customer, meter, value, timestamp, id, attributes)
        accepted: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._put((prepared, accepted))
        accepted.result(timeout_s)
        return prepared.id

    def report_nowait(
        self,
        customer: str,
        meter: str,
        value: EventValue,
        *,
        timestamp: Timestamp = None,
        id: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Validate one event and queue it without waiting; return its id."""
        prepared = prepare_event(customer, meter, value, timestamp, id, attributes)
        self._put((prepared, None))
        return prepared.id

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every event reported so far is acknowledged or fsynced in the spool.

        Returns False if that did not happen within ``timeout_s``.
        """
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._put((None, done))
        try:
            done.result(timeout_s)
        except TimeoutError:
            return False
        return True

    def close(self, timeout_s: float | None = None) -> None:
        """Take everything queued, close the producer (see UsageProducer.close), stop the
        thread. Idempotent."""
        closed: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        self._put((_CLOSE, closed), force=True)
        try:
            closed.result(timeout_s)
        finally:
            self._stop_thread()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _put(self, item: _Item, *, force: bool = False) -> None:
        with self._lock:
            if self._closed and not force:
                raise ProducerError("the reporter is closed")
            self._inbox.append(item)
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        self._loop.call_soon_threadsafe(self._wake_up)

    def _stop_thread(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    # -- the reporter's loop ---------------------------------------------------------

    def _wake_up(self) -> None:
        assert self._wake is not None
        self._wake.set()

    async def _pump(self, producer: UsageProducer) -> None:
        assert self._wake is not None
        inbox = self._inbox
        while True:
            await self._wake.wait()
            self._wake.clear()
            with self._lock:
                self._wake_scheduled = False
            while inbox:
                prepared, future = inbox.popleft()
                try:
                    if prepared is _CLOSE:
                        await producer.close()
                    elif prepared is None:
                        await producer.flush()
                    else:
                        producer.accept(prepared)
                        await producer.wait_accepted()
                except Exception as exc:  # (handed to the waiting thread)
                    if future is None:
                        log.error("reporting an event failed: %s", exc)
                    else:
                        future.set_exception(exc)
                    continue
                if future is not None:
                    future.set_result(None)
                if prepared is _CLOSE:
                    return
