"""The billing engines behind the sink's one port (:class:`~streams.sink.model.MeterEventClient`).

One engine per sink process, chosen by ``METERSTREAM_SINK__ENGINE``:

- ``stripe`` (default): Stripe Billing Meters, in the mode ``STRIPE__MODE`` names (v1,
  v2 stream, dry-run); clients in :mod:`streams.sink.engines.stripe_meter`.
- ``metronome``: Metronome's ``POST /v1/ingest`` (:mod:`streams.sink.engines.metronome`),
  with its fake in :mod:`streams.fakes.metronome`.

:func:`engine_profile` gives what the rest of the sink needs to know about the engine
(limits, pacing, the secret to redact); :func:`make_client` builds the client. Two sinks
with different engines can read the same summaries at once: their consumer groups differ
(:func:`sink_group_id`).
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.config import MeterSettings, Settings
from streams.errors import ConfigError
from streams.sink.model import MeterEventClient
from streams.sink.plan import METRONOME_LIMITS, STRIPE_LIMITS, EngineLimits, window_problems

__all__ = [
    "EngineProfile",
    "engine_meters",
    "engine_problems",
    "engine_profile",
    "make_client",
    "sink_group_id",
]


@dataclass(frozen=True, slots=True)
class EngineProfile:
    """The engine-specific knobs of one sink process."""

    name: str
    limits: EngineLimits
    rate_limit_per_s: float
    max_concurrency: int
    timeout_s: float
    max_retries: int
    auth_retry_s: float
    secret: str
    """The credential to redact from every message (empty: none configured)."""


def engine_profile(settings: Settings) -> EngineProfile:
    if settings.sink.engine == "metronome":
        m = settings.metronome
        return EngineProfile(
            "metronome", METRONOME_LIMITS, m.rate_limit_per_s, m.max_concurrency, m.timeout_s,
            m.max_retries, m.auth_retry_s,
            m.api_token.get_secret_value() if m.api_token else "")
    s = settings.stripe
    return EngineProfile(
        "stripe", STRIPE_LIMITS, s.effective_rate_limit_per_s, s.max_concurrency, s.timeout_s,
        s.max_retries, s.auth_retry_s, s.api_key.get_secret_value() if s.api_key else "")


def sink_group_id(settings: Settings) -> str:
    """``<app_id>-sink`` for Stripe (as before), ``<app_id>-sink-metronome`` for Metronome."""
    suffix = "" if settings.sink.engine == "stripe" else f"-{settings.sink.engine}"
    return f"{settings.worker.app_id}-sink{suffix}"


def engine_meters(settings: Settings) -> dict[str, MeterSettings]:
    """Our meters as the engine sees them: for Metronome, ``stripe_event_name`` holds the
    Metronome event type and every meter sends deltas (Metronome sums its events; it has
    no "latest event of a window wins" meter)."""
    if settings.sink.engine == "stripe":
        return {m.name: m for m in settings.meters}
    mt = settings.metronome
    return {m.name: m.model_copy(update={"stripe_event_name": mt.event_type(m.name),
                                         "stripe_window": "none"})
            for m in settings.meters}


def engine_problems(settings: Settings) -> list[str]:
    """Configuration errors that stop a sink of this engine at start."""
    if settings.sink.engine == "stripe":
        return window_problems(settings.meters, settings.aggregator.window_s)
    problems = []
    m = settings.metronome
    if m.api_token is None and m.api_base is None:
        problems.append("METERSTREAM_METRONOME__API_TOKEN: the metronome engine needs a bearer "
                        "token (or METERSTREAM_METRONOME__API_BASE pointing at a fake "
                        "Metronome)")
    for meter in settings.meters:
        if meter.aggregation == "max":
            problems.append(
                f"METERSTREAM_METERS: meter {meter.name} aggregates with 'max', which the "
                "metronome engine cannot carry (it sends deltas that a SUM billable metric "
                "adds up); use sum or count meters")
    return problems


def make_client(settings: Settings) -> MeterEventClient:
    """The client of ``SINK__ENGINE``; raises ConfigError listing every problem."""
    problems = engine_problems(settings)
    if problems:
        raise ConfigError(problems)
    if settings.sink.engine == "metronome":
        from streams.sink.engines.metronome import make_metronome_client

        return make_metronome_client(settings.metronome)
    from streams.sink.engines.stripe_meter import make_meter_event_client

    return make_meter_event_client(settings.stripe)
