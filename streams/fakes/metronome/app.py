"""FakeMetronome: the server's lifecycle, middleware (stats, down switch) and admin API.

In-process::

    async with FakeMetronome(FakeMetronomeConfig(seed=1)) as fake:
        client = MetronomeClient(api_token="tok", api_base=fake.url)
        ...
        assert fake.ledger.totals()[("acct_1", "cpu_seconds")] == Decimal("12.5")

Admin endpoints (no auth; local use only; documented in docs/metronome.md):
``GET /_fake/ledger`` (accepted, duplicates ignored, unmatched, totals per customer and
event type), ``GET /_fake/events`` (every accepted event), ``GET /_fake/stats``,
``GET /_fake/rejected`` (messages of refused requests), ``POST /_fake/faults`` (JSON with
any field of :class:`~streams.fakes.stripe.config.Faults`, plus optional ``seed``),
``POST /_fake/down`` (``{"mode": "up" | "503" | "refuse", "for_s": 5}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Literal

import orjson
from aiohttp import web

from streams.fakes.metronome.api import (
    DROPPED,
    FakeMetronomeState,
    MetronomeApi,
    MetronomeApiError,
    json_response,
)
from streams.fakes.metronome.config import Clock, FakeMetronomeConfig, Faults
from streams.fakes.metronome.ledger import MetronomeLedger
from streams.fakes.stripe.faults import FaultInjector

__all__ = ["FakeMetronome"]

DownMode = Literal["up", "503", "refuse"]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeMetronome:
    """A stateful fake of Metronome's ingest and usage APIs on an aiohttp server."""

    def __init__(self, config: FakeMetronomeConfig | None = None) -> None:
        self.config = config or FakeMetronomeConfig()
        self.state = FakeMetronomeState(
            config=self.config,
            ledger=MetronomeLedger(self.config.billable_metrics, self.config.dedup_s),
            injector=FaultInjector(self.config.faults, self.config.seed),
        )
        self._down: DownMode = "up"
        self._up_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._port = self.config.port
        self.app = web.Application(middlewares=[self._middleware])
        self.app.add_routes(MetronomeApi(self.state).routes())
        self.app.add_routes([
            web.get("/_fake/ledger", self._admin_ledger),
            web.get("/_fake/events", self._admin_events),
            web.get("/_fake/stats", self._admin_stats),
            web.get("/_fake/rejected", self._admin_rejected),
            web.post("/_fake/faults", self._admin_faults),
            web.post("/_fake/down", self._admin_down),
        ])

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.config.host, self._port, reuse_address=True)
        await self._site.start()
        self._port = int(self._runner.addresses[-1][1])

    async def close(self) -> None:
        for task in [*self._background, *([self._up_task] if self._up_task else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeMetronome:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base address, e.g. ``http://127.0.0.1:40123`` (``METRONOME__API_BASE``)."""
        return f"http://{self.config.host}:{self._port}"

    # -- controls and accessors -----------------------------------------------------------

    @property
    def ledger(self) -> MetronomeLedger:
        return self.state.ledger

    @property
    def stats(self) -> dict[str, Any]:
        snap: dict[str, Any] = self.state.stats.snapshot()
        snap["accepted_events"] = self.ledger.accepted_count
        snap["duplicates_ignored"] = self.ledger.duplicates_ignored
        snap["unmatched"] = self.ledger.unmatched
        snap["rejected_requests"] = len(self.state.rejected)
        snap["faults"] = {
            kind: sum(1 for d in self.state.injector.log if d.kind == kind)
            for kind in ("429", "500", "timeout", "drop")
        }
        return snap

    def set_faults(self, faults: Faults | None = None, *, seed: int | None = None,
                   **changes: Any) -> Faults:
        """Replace the faults (or change some fields); ``seed`` restarts the RNG."""
        new = faults or dataclasses.replace(self.state.injector.faults, **changes)
        self.state.injector.set_faults(new, seed)
        return new

    def set_clock(self, clock: Clock) -> None:
        self.config = dataclasses.replace(self.config, clock=clock)
        self.state.config = self.config

    def set_api_token(self, api_token: str | None) -> None:
        """Accept only ``api_token`` from now on (None: any): revoke or rotate."""
        self.config = dataclasses.replace(self.config, api_token=api_token)
        self.state.config = self.config

    async def set_down(self, mode: DownMode, *, for_s: float | None = None) -> None:
        """``503``: answer every API request with 503. ``refuse``: stop listening.
        ``up``: back to normal. ``for_s``: back to up after that many seconds."""
        if self._up_task is not None and self._up_task is not asyncio.current_task():
            self._up_task.cancel()
            self._up_task = None
        previous, self._down = self._down, mode
        if mode == "refuse" and previous != "refuse" and self._site is not None:
            await self._site.stop()
            self._site = None
        elif mode != "refuse" and previous == "refuse":
            await self._listen()
        if for_s is not None and mode != "up":
            self._up_task = asyncio.create_task(self._up_later(for_s))

    async def _up_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self.set_down("up")

    async def _refuse_soon(self, for_s: float | None) -> None:
        await asyncio.sleep(0.05)
        await self.set_down("refuse", for_s=for_s)

    # -- middleware and admin -------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path.startswith("/_fake/"):
            return await handler(request)
        stats = self.state.stats
        stats.arrive()
        status: int | None = None
        try:
            if self._down == "refuse":
                request[DROPPED] = True
                if request.transport is not None:
                    request.transport.abort()
                resp: web.StreamResponse = web.Response(status=503)
            elif self._down == "503":
                resp = MetronomeApiError(503, "Service unavailable (fake down switch).").response()
            else:
                try:
                    resp = await handler(request)
                except MetronomeApiError as exc:
                    resp = exc.response()
            status = None if request.get(DROPPED) else resp.status
            return resp
        finally:
            stats.leave(status)

    async def _admin_ledger(self, request: web.Request) -> web.Response:
        return json_response(self.ledger.snapshot())

    async def _admin_events(self, request: web.Request) -> web.Response:
        return json_response([e.to_json() for e in self.ledger.events.values()])

    async def _admin_stats(self, request: web.Request) -> web.Response:
        return json_response(self.stats)

    async def _admin_rejected(self, request: web.Request) -> web.Response:
        return json_response(self.state.rejected)

    async def _admin_faults(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read() or b"{}")
            seed = body.pop("seed", None)
            faults = self.set_faults(seed=seed, **body)
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
            return json_response({"error": str(exc)}, status=400)
        return json_response(dataclasses.asdict(faults))

    async def _admin_down(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read() or b"{}")
            mode = body["mode"]
            for_s = body.get("for_s")
            if mode not in ("up", "503", "refuse"):
                raise ValueError("mode must be up, 503 or refuse")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return json_response({"error": str(exc)}, status=400)
        if mode == "refuse":
            task = asyncio.create_task(self._refuse_soon(for_s))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        else:
            await self.set_down(mode, for_s=for_s)
        return json_response({"mode": mode, "for_s": for_s})
