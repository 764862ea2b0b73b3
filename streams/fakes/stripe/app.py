"""FakeStripe: a :class:`~streams.fakes.server.FakeServer` serving Stripe's meter APIs.

In-process::

    async with FakeStripe(FakeStripeConfig(seed=1)) as fake:
        client = StripeV1Client(api_key="sk_test_x", api_base=fake.url)
        ...
        assert fake.ledger.total("cus_1", "cpu_seconds") == Decimal("12.5")

Admin endpoints (no auth; local use only): ``GET /_fake/ledger``, ``GET /_fake/stats``,
``GET /_fake/errors``, ``POST /_fake/faults`` (JSON with any field of :class:`Faults`,
plus optional ``seed``), ``POST /_fake/down`` (``{"mode": "up" | "503" | "refuse",
"for_s": 5}``; ``refuse`` closes the listening socket, so only ``for_s`` brings it back
from outside the process).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from streams.fakes.faults import Clock, FaultInjector
from streams.fakes.server import FakeServer
from streams.fakes.stripe.config import FakeStripeConfig
from streams.fakes.stripe.ledger import Ledger
from streams.fakes.stripe.state import FakeState
from streams.fakes.stripe.v1 import V1Api
from streams.fakes.stripe.v2 import V2Api
from streams.fakes.stripe.wire import ApiError, json_response

__all__ = ["FakeStripe"]


class FakeStripe(FakeServer):
    """A stateful fake of Stripe's billing meter APIs on an aiohttp server."""

    error_type = ApiError
    _json = staticmethod(json_response)

    def __init__(self, config: FakeStripeConfig | None = None) -> None:
        self.config = config or FakeStripeConfig()
        self.state = FakeState(
            config=self.config,
            ledger=Ledger(self.config.meters),
            injector=FaultInjector(self.config.faults, self.config.seed),
        )
        super().__init__(
            host=self.config.host, port=self.config.port, injector=self.state.injector,
            stats=self.state.stats,
            routes=[*V1Api(self.state).routes(), *V2Api(self.state).routes()],
            admin_routes=[web.get("/_fake/errors", self._admin_errors)])

    async def close(self) -> None:
        self.state.closing.set()  # held requests end now
        await super().close()

    @property
    def url(self) -> str:
        """Base address, e.g. ``http://127.0.0.1:40123``: both the api and meter_events base."""
        return super().url

    @property
    def ledger(self) -> Ledger:
        return self.state.ledger

    @property
    def stats(self) -> dict[str, Any]:
        snap = super().stats
        snap["accepted_events"] = self.ledger.accepted_count
        snap["duplicates_rejected"] = self.ledger.duplicates_rejected
        return snap

    def set_clock(self, clock: Clock) -> None:
        self.config = dataclasses.replace(self.config, clock=clock)
        self.state.config = self.config

    def set_api_key(self, api_key: str | None) -> None:
        """Accept only ``api_key`` from now on (None: any test key): revoke or rotate."""
        self.config = dataclasses.replace(self.config, api_key=api_key)
        self.state.config = self.config

    def unavailable(self) -> web.StreamResponse:
        return ApiError(
            503, "Stripe is temporarily unavailable (fake down switch).",
            type="api_error", headers={"Stripe-Should-Retry": "true"},
        ).response()

    def ledger_snapshot(self) -> object:
        return self.ledger.snapshot()

    async def _admin_errors(self, request: web.Request) -> web.Response:
        return json_response([dataclasses.asdict(r) for r in self.state.error_reports])
