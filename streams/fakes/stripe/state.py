"""The fake's mutable state, and the fault-aware path every meter-event write takes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from streams.fakes.faults import FaultDecision, FaultInjector, TrafficStats
from streams.fakes.server import DROPPED
from streams.fakes.stripe.config import FakeStripeConfig
from streams.fakes.stripe.ledger import Ledger
from streams.fakes.stripe.wire import ApiError, json_response

__all__ = ["ErrorReport", "FakeState", "IdempotentResult", "guarded_write"]

@dataclass(frozen=True, slots=True)
class ErrorReport:
    """An event Stripe accepted (2xx) but rejected later, asynchronously."""

    api: str
    code: str
    message: str
    identifier: str | None
    event_name: str | None


@dataclass(frozen=True, slots=True)
class IdempotentResult:
    fingerprint: str
    status: int
    body: bytes


@dataclass
class FakeState:
    config: FakeStripeConfig
    ledger: Ledger
    injector: FaultInjector
    stats: TrafficStats = field(default_factory=TrafficStats)
    sessions: dict[str, float] = field(default_factory=dict)
    idempotency: dict[str, IdempotentResult] = field(default_factory=dict)
    error_reports: list[ErrorReport] = field(default_factory=list)
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def now(self) -> float:
        return self.config.clock()

    async def hold(self, seconds: float) -> None:
        """Sleep, but end early when the server shuts down."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), seconds)


def rate_limited(state: FakeState, reason: str, message: str) -> ApiError:
    headers = {"Stripe-Rate-Limited-Reason": reason}
    if state.injector.faults.retry_after_s is not None:
        headers["Retry-After"] = f"{state.injector.faults.retry_after_s:g}"
    return ApiError(429, message, type="rate_limit_error", code="rate_limit", headers=headers)


def _api_error_500() -> ApiError:
    return ApiError(
        500,
        "An unknown error occurred. Please try again.",
        type="api_error",
        headers={"Stripe-Should-Retry": "true"},
    )


def _answer(process: Callable[[], web.Response]) -> web.Response:
    try:
        return process()
    except ApiError as exc:
        return exc.response()


async def guarded_write(
    state: FakeState,
    request: web.Request,
    decision: FaultDecision,
    *,
    pairs: Sequence[tuple[str, str]],
    idempotency: tuple[str, str] | None,
    process: Callable[[], web.Response],
) -> web.Response:
    """Run one validated meter-event write through faults, idempotency and the
    one-in-flight rule, in Stripe's order: rate limits, idempotent replay, execution.

    ``pairs``: (customer, event name) pairs the request writes (v1: one; v2: none, the
    stream has no per-customer concurrency limit). ``idempotency``: (key, request
    fingerprint) when the request carries an Idempotency-Key. ``process`` applies the
    request to the ledger and builds the answer; an ApiError it raises becomes the answer.
    """
    if decision.kind == "429":
        raise rate_limited(state, "global-rate", "Request rate limit exceeded.")
    if idempotency is not None:
        key, fingerprint = idempotency
        saved = state.idempotency.get(key)
        if saved is not None:
            if saved.fingerprint != fingerprint:
                raise ApiError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with.",
                    type="idempotency_error",
                    code="idempotency_key_in_use",
                )
            state.stats.idempotent_replays += 1
            return web.Response(
                body=saved.body,
                status=saved.status,
                content_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )

    def save(resp: web.Response) -> web.Response:
        # Stripe saves the result once the endpoint began executing, 500s included.
        if idempotency is not None and (resp.status < 400 or resp.status >= 500):
            assert isinstance(resp.body, bytes)
            state.idempotency[idempotency[0]] = IdempotentResult(
                idempotency[1], resp.status, resp.body
            )
        return resp

    entered: list[tuple[str, str]] = []
    try:
        for pair in pairs:
            if not state.stats.pair_enter(pair):
                raise rate_limited(
                    state,
                    "resource-specific",
                    "This meter received concurrent requests for the same customer; "
                    "send one request per customer and meter at a time.",
                )
            entered.append(pair)
        await state.hold(state.injector.faults.latency_s)
        if decision.kind == "500":
            return save(_api_error_500().response())
        if decision.kind == "timeout":
            resp = save(_answer(process)) if decision.applied else _api_error_500().response()
            await state.hold(state.injector.faults.timeout_hold_s)
            return resp
        if decision.kind == "drop":
            if decision.applied:
                save(_answer(process))
            request[DROPPED] = True
            if request.transport is not None:
                request.transport.abort()
            return json_response({})
        return save(_answer(process))
    finally:
        for pair in entered:
            state.stats.pair_leave(pair)
