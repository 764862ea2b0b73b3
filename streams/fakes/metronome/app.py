"""FakeMetronome: a :class:`~streams.fakes.server.FakeServer` serving Metronome's usage APIs.

In-process::

    async with FakeMetronome(FakeMetronomeConfig(seed=1)) as fake:
        client = MetronomeClient(api_token="tok", api_base=fake.url)
        ...
        assert fake.ledger.totals()[("acct_1", "cpu_seconds")] == Decimal("12.5")

Admin endpoints (no auth; local use only; documented in docs/metronome.md):
``GET /_fake/ledger`` (accepted, duplicates ignored, unmatched, totals per customer and
event type), ``GET /_fake/events`` (every accepted event), ``GET /_fake/stats``,
``GET /_fake/rejected`` (messages of refused requests), ``POST /_fake/faults`` (JSON with
any field of :class:`~streams.fakes.faults.Faults`, plus optional ``seed``),
``POST /_fake/down`` (``{"mode": "up" | "503" | "refuse", "for_s": 5}``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from streams.fakes.faults import Clock, FaultInjector
from streams.fakes.metronome.api import FakeMetronomeState, MetronomeApi, MetronomeApiError
from streams.fakes.metronome.config import FakeMetronomeConfig
from streams.fakes.metronome.ledger import MetronomeLedger
from streams.fakes.server import FakeServer, json_response

__all__ = ["FakeMetronome"]


class FakeMetronome(FakeServer):
    """A stateful fake of Metronome's ingest and usage APIs on an aiohttp server."""

    error_type = MetronomeApiError

    def __init__(self, config: FakeMetronomeConfig | None = None) -> None:
        self.config = config or FakeMetronomeConfig()
        self.state = FakeMetronomeState(
            config=self.config,
            ledger=MetronomeLedger(self.config.billable_metrics, self.config.dedup_s),
            injector=FaultInjector(self.config.faults, self.config.seed),
        )
        super().__init__(
            host=self.config.host, port=self.config.port, injector=self.state.injector,
            stats=self.state.stats, routes=MetronomeApi(self.state).routes(),
            admin_routes=[web.get("/_fake/events", self._admin_events),
                          web.get("/_fake/rejected", self._admin_rejected)])

    @property
    def url(self) -> str:
        """Base address, e.g. ``http://127.0.0.1:40123`` (``METRONOME__API_BASE``)."""
        return super().url

    @property
    def ledger(self) -> MetronomeLedger:
        return self.state.ledger

    @property
    def stats(self) -> dict[str, Any]:
        snap = super().stats
        snap["accepted_events"] = self.ledger.accepted_count
        snap["duplicates_ignored"] = self.ledger.duplicates_ignored
        snap["unmatched"] = self.ledger.unmatched
        snap["rejected_requests"] = len(self.state.rejected)
        return snap

    def set_clock(self, clock: Clock) -> None:
        self.config = dataclasses.replace(self.config, clock=clock)
        self.state.config = self.config

    def set_api_token(self, api_token: str | None) -> None:
        """Accept only ``api_token`` from now on (None: any): revoke or rotate."""
        self.config = dataclasses.replace(self.config, api_token=api_token)
        self.state.config = self.config

    def unavailable(self) -> web.StreamResponse:
        return MetronomeApiError(503, "Service unavailable (fake down switch).").response()

    def ledger_snapshot(self) -> object:
        return self.ledger.snapshot()

    async def _admin_events(self, request: web.Request) -> web.Response:
        return json_response([e.to_json() for e in self.ledger.events.values()])

    async def _admin_rejected(self, request: web.Request) -> web.Response:
        return json_response(self.state.rejected)
