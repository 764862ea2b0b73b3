"""streams.util.backoff: the one backoff of the sink, the alerts tail and the producer SDK."""

from __future__ import annotations

import random

from streams.util.backoff import MAX_RETRY_AFTER_S, Backoff


def test_ceiling_doubles_from_base_up_to_cap() -> None:
    b = Backoff(base_s=0.1, cap_s=1.0)
    assert [b.ceiling_s(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.ceiling_s(10_000) == 1.0  # no overflow on a long outage


def test_without_jitter_the_delay_is_the_ceiling() -> None:
    b = Backoff(base_s=0.1, cap_s=5.0, jitter=False)
    assert [b.delay_s(n) for n in range(4)] == [0.1, 0.2, 0.4, 0.8]


def test_full_jitter_stays_under_the_ceiling_and_spreads() -> None:
    b = Backoff(base_s=0.5, cap_s=30.0, rng=random.Random(7))
    delays = [b.delay_s(3) for _ in range(200)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 150


def test_retry_after_is_a_floor_but_bounded() -> None:
    b = Backoff(base_s=0.01, cap_s=0.02, jitter=False)
    assert b.delay_s(0, retry_after_s=7.0) == 7.0
    assert b.delay_s(0, retry_after_s=10_000.0) == MAX_RETRY_AFTER_S
    assert b.delay_s(0, retry_after_s=0.0) == 0.01
