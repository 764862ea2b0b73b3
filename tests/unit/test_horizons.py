"""The worker's too_old bound follows the billing engine (issue #13 item 2, #14 item 4):
whatever the worker accepts, the engine's sink can still bill."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.config import Settings, effective_max_age_ms, load_settings
from streams.core.aggregate import Aggregator, CoreConfig, SourceRecord
from streams.core.horizons import ENGINE_HORIZON_S, SINK_PAST_MARGIN_S, max_age_ms_for
from streams.core.pricing import MeterRule
from streams.errors import PlanError
from streams.sink.engines import engine_meters, engine_profile
from streams.sink.plan import parse_summary, plan_events, timestamp_for
from streams.testing.memory_state import MemoryState

DAY_MS = 86_400_000
MIN_MS = 60_000
NOW_MS = 1_780_000_000_000 - 1_780_000_000_000 % 3_600_000  # on an hour


def settings_for(engine: str, **aggregator: int) -> Settings:
    return load_settings(sink={"engine": engine}, aggregator=aggregator)


def core_for(s: Settings) -> CoreConfig:
    # What streams.runtime.app.core_config passes for max_age_ms.
    a = s.aggregator
    return CoreConfig(meters={m.name: MeterRule(m.name, m.aggregation, m.unit_price_minor)
                              for m in s.meters},
                      window_ms=a.window_s * 1000, grace_ms=a.grace_s * 1000,
                      max_age_ms=effective_max_age_ms(s))


def run(cfg: CoreConfig, age_ms: int) -> tuple[list[str], list[dict[str, object]]]:
    """One event ``age_ms`` old (record produced now), then a tick a window later."""
    event = {"id": "e1", "customer": "acme", "meter": "cpu_seconds", "value": "2.5",
             "timestamp": NOW_MS - age_ms}
    records = [SourceRecord(0, NOW_MS, "acme", orjson.dumps(event)),
               SourceRecord(1, NOW_MS, None, None,
                            tick_ms=NOW_MS + cfg.window_ms + cfg.grace_ms)]
    store = MemoryState()
    result = Aggregator(cfg).process(0, records, store, now_ms=NOW_MS)
    return [d.reason for d in result.dead_letters], result.summaries


def test_defaults_leave_room_for_window_grace_and_margin() -> None:
    stripe = effective_max_age_ms(settings_for("stripe"))
    metronome = effective_max_age_ms(settings_for("metronome"))
    assert stripe == 35 * DAY_MS - (15 + 60 + 5) * MIN_MS
    assert metronome == 34 * DAY_MS - (15 + 60 + 5) * MIN_MS


def test_the_operator_bound_is_kept_when_it_is_stricter() -> None:
    s = settings_for("stripe", max_age_s=7 * 86_400)
    assert effective_max_age_ms(s) == 7 * DAY_MS


def test_no_room_is_an_error() -> None:
    with pytest.raises(ValueError, match="no room"):
        max_age_ms_for(engine="metronome", window_s=34 * 86_400, grace_s=0, max_age_s=3600)


@pytest.mark.parametrize("engine", ["stripe", "metronome"])
def test_issue_case_35_days_minus_2_minutes_is_refused_by_the_worker(engine: str) -> None:
    """An event 35 days minus 2 minutes old (record time now) went through the worker and
    died at the sink as too_old_for_stripe; now the worker refuses it."""
    dead, summaries = run(core_for(settings_for(engine)), 35 * DAY_MS - 2 * MIN_MS)
    assert dead == ["too_old"]
    assert summaries == []


@pytest.mark.parametrize("engine", ["stripe", "metronome"])
def test_what_the_worker_accepts_the_sink_accepts(engine: str) -> None:
    s = settings_for(engine)
    cfg = core_for(s)
    dead, summaries = run(cfg, cfg.max_age_ms - 1000)
    assert dead == [] and len(summaries) == 1
    summary = parse_summary(summaries[0])
    meter = engine_meters(s)["cpu_seconds"]
    # Sent when the window closed: a window and the grace period after the record.
    events = plan_events(summary, meter, "cus_acme", NOW_MS + cfg.window_ms + cfg.grace_ms,
                         engine_profile(s).limits)
    assert [str(e.value) for e in events] == ["2.5"]


@pytest.mark.parametrize("engine", ["stripe", "metronome"])
def test_one_step_past_the_bound_is_refused(engine: str) -> None:
    cfg = core_for(settings_for(engine))
    dead, _ = run(cfg, cfg.max_age_ms + 1)
    assert dead == ["too_old"]


@settings(max_examples=300, deadline=None)
@given(engine=st.sampled_from(["stripe", "metronome"]),
       window_s=st.sampled_from([60, 300, 900, 3600, 86_400]),
       grace_s=st.integers(0, 3600), age_ms=st.integers(0, 35 * DAY_MS),
       delay_ms=st.integers(0, 10**9))
def test_any_accepted_age_is_billable_when_its_window_closes(
        engine: str, window_s: int, grace_s: int, age_ms: int, delay_ms: int) -> None:
    """Property: an event the bound lets through (age <= max_age at record time), sent
    at any time up to a window and a grace period later, is inside the engine's range."""
    s = settings_for(engine, window_s=window_s, grace_s=grace_s)
    max_age_ms = effective_max_age_ms(s)
    if age_ms > max_age_ms:
        return
    ts = NOW_MS - age_ms
    window_ms = window_s * 1000
    ws = ts - ts % window_ms
    send_ms = NOW_MS + min(delay_ms, window_ms + grace_s * 1000)
    try:
        timestamp_for(ws, ws + window_ms, send_ms, engine_profile(s).limits)
    except PlanError as exc:  # pragma: no cover - the failure message is the point
        raise AssertionError(f"{engine}: accepted at age {age_ms} ms, refused: {exc}") from exc


def test_horizons_are_the_engines_published_limits() -> None:
    assert ENGINE_HORIZON_S == {"stripe": 35 * 86_400, "metronome": 34 * 86_400}
    assert SINK_PAST_MARGIN_S == 15 * 60
