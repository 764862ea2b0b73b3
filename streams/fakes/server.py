"""What every fake server shares: the aiohttp server's lifecycle, the middleware (traffic
statistics, the down switch, error answers), the common admin endpoints and the command
line around it.

A fake subclasses :class:`FakeServer` with its API's routes, its extra admin routes, its
error answer type and its 503 answer. Common admin endpoints (no auth; local use only):
``GET /_fake/ledger``, ``GET /_fake/stats``, ``POST /_fake/faults`` (JSON with any field of
:class:`~streams.fakes.faults.Faults`, plus optional ``seed``) and ``POST /_fake/down``
(``{"mode": "up" | "503" | "refuse", "for_s": 5}``; ``refuse`` closes the listening
socket, so only ``for_s`` brings it back from outside the process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Protocol, Self

import orjson
from aiohttp import web

from streams.fakes.faults import DownMode, FaultInjector, Faults, TrafficStats

__all__ = [
    "DROPPED",
    "ErrorAnswer",
    "FakeServer",
    "add_server_arguments",
    "faults_from_args",
    "json_response",
    "serve_until_signalled",
]

DROPPED = web.RequestKey("fakes.dropped", bool)
"""Set on a request whose connection the fake cut: no status is counted for it."""

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ErrorAnswer(Protocol):
    """An exception a fake's handler raises to answer with an error."""

    def response(self) -> web.Response: ...


def json_response(body: object, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status,
                        content_type="application/json", headers=headers)


class FakeServer:
    """An aiohttp server with fault injection, a down switch and the common admin API.

    Subclasses pass their routes and set :attr:`error_type`; they implement
    :meth:`unavailable` (the 503 of the down switch) and :meth:`ledger_snapshot`.
    """

    error_type: type[Exception]
    # How the admin endpoints answer JSON (the fake Stripe writes Decimals as numbers).
    _json: Callable[..., web.Response] = staticmethod(json_response)

    def __init__(self, *, host: str, port: int, injector: FaultInjector, stats: TrafficStats,
                 routes: Iterable[web.RouteDef],
                 admin_routes: Iterable[web.RouteDef] = ()) -> None:
        self._host = host
        self._port = port
        self._injector = injector
        self._stats = stats
        self._down: DownMode = "up"
        self._up_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.app = web.Application(middlewares=[self._middleware])
        self.app.add_routes(routes)
        self.app.add_routes([
            web.get("/_fake/ledger", self._admin_ledger),
            web.get("/_fake/stats", self._admin_stats),
            web.post("/_fake/faults", self._admin_faults),
            web.post("/_fake/down", self._admin_down),
            *admin_routes,
        ])

    def unavailable(self) -> web.StreamResponse:
        """The answer to every API request while the down switch says 503."""
        raise NotImplementedError

    def ledger_snapshot(self) -> object:
        """What ``GET /_fake/ledger`` answers (JSON-serialisable)."""
        raise NotImplementedError

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
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

    async def __aenter__(self) -> Self:
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
        """Base address, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{self._host}:{self._port}"

    # -- controls -------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """Traffic statistics (:class:`streams.fakes.faults.TrafficStats`) and the faults
        injected by kind; subclasses add their ledger's counts."""
        snap: dict[str, Any] = self._stats.snapshot()
        snap["faults"] = {
            kind: sum(1 for d in self._injector.log if d.kind == kind)
            for kind in ("429", "500", "timeout", "drop")
        }
        return snap

    @property
    def faults(self) -> Faults:
        return self._injector.faults

    def set_faults(self, faults: Faults | None = None, *, seed: int | None = None,
                   **changes: Any) -> Faults:
        """Replace the faults (or change some fields of the current ones); ``seed``
        restarts the RNG."""
        new = faults or dataclasses.replace(self._injector.faults, **changes)
        self._injector.set_faults(new, seed)
        return new

    async def set_down(self, mode: DownMode, *, for_s: float | None = None) -> None:
        """``503``: answer every API request with 503. ``refuse``: stop listening, so
        connections are refused. ``up``: back to normal. ``for_s``: revert to up later."""
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

    async def _refuse_soon(self, for_s: float | None) -> None:
        await asyncio.sleep(0.05)
        await self.set_down("refuse", for_s=for_s)

    async def _up_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self.set_down("up")

    # -- middleware and admin -------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path.startswith("/_fake/"):
            return await handler(request)
        stats = self._stats
        stats.arrive()
        status: int | None = None
        try:
            if self._down == "refuse":
                # Keep-alive connections outlive the listening socket: cut them too.
                request[DROPPED] = True
                if request.transport is not None:
                    request.transport.abort()
                resp: web.StreamResponse = web.Response(status=503)
            elif self._down == "503":
                resp = self.unavailable()
            else:
                try:
                    resp = await handler(request)
                except self.error_type as exc:
                    answer: ErrorAnswer = exc  # type: ignore[assignment]
                    resp = answer.response()
            status = None if request.get(DROPPED) else resp.status
            return resp
        finally:
            stats.leave(status)

    async def _admin_ledger(self, request: web.Request) -> web.Response:
        return self._json(self.ledger_snapshot())

    async def _admin_stats(self, request: web.Request) -> web.Response:
        return self._json(self.stats)

    async def _admin_faults(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read() or b"{}")
            seed = body.pop("seed", None)
            faults = self.set_faults(seed=seed, **body)
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
            return self._json({"error": str(exc)}, status=400)
        return self._json(dataclasses.asdict(faults))

    async def _admin_down(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read() or b"{}")
            mode = body["mode"]
            for_s = body.get("for_s")
            if mode not in ("up", "503", "refuse"):
                raise ValueError("mode must be up, 503 or refuse")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return self._json({"error": str(exc)}, status=400)
        if mode == "refuse":
            # Answer first: stopping the site ends this very connection.
            task = asyncio.create_task(self._refuse_soon(for_s))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        else:
            await self.set_down(mode, for_s=for_s)
        return self._json({"mode": mode, "for_s": for_s})


# -- the command line ---------------------------------------------------------------------


def add_server_arguments(p: argparse.ArgumentParser, *, port: int, requests: str) -> None:
    """The options every fake takes: where it listens and its fault mix. ``requests``
    names the requests faults apply to (for the help)."""
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=port, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    p.add_argument("--fault-429", type=float, default=0.0, metavar="RATE",
                   help=f"share of {requests} answered 429 (not applied)")
    p.add_argument("--fault-500", type=float, default=0.0, metavar="RATE",
                   help=f"share of {requests} answered 500 (not applied)")
    p.add_argument("--fault-timeout", type=float, default=0.0, metavar="RATE",
                   help="share held for --timeout-hold-s, applied or not")
    p.add_argument("--fault-drop", type=float, default=0.0, metavar="RATE",
                   help="share whose connection is closed without an answer, applied or not")
    p.add_argument("--timeout-hold-s", type=float, default=30.0,
                   help="how long a timeout fault holds the request (default 30)")
    p.add_argument("--applied-probability", type=float, default=0.5,
                   help="chance that a timed-out or dropped request was applied (default 0.5)")
    p.add_argument("--latency-s", type=float, default=0.0,
                   help=f"delay before each of the {requests} is processed")
    p.add_argument("--retry-after-s", type=float, default=None,
                   help="send Retry-After with 429 answers")


def faults_from_args(a: argparse.Namespace) -> Faults:
    """The fault mix of :func:`add_server_arguments`' options (ValueError if invalid)."""
    return Faults(rate_429=a.fault_429, rate_500=a.fault_500, rate_timeout=a.fault_timeout,
                  rate_drop=a.fault_drop, timeout_hold_s=a.timeout_hold_s,
                  applied_probability=a.applied_probability, latency_s=a.latency_s,
                  retry_after_s=a.retry_after_s)


async def serve_until_signalled(make: Callable[[], FakeServer], name: str) -> None:
    """Run the fake ``make()`` builds (in the event loop) until SIGINT or SIGTERM; print
    ``NAME listening on URL`` once it accepts connections, and its statistics to stderr
    when it stops."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with make() as fake:
        print(f"{name} listening on {fake.url}", flush=True)
        await stop.wait()
        print(f"{name} stopping: {fake.stats}", file=sys.stderr, flush=True)
