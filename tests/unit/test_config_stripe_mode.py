"""The Stripe mode changes only when STRIPE__MODE says so (issue 13, item 3).

Setting any other Stripe setting alone keeps the documented default, dry-run; a setting
that the chosen mode does not use stops the process at start with a message naming it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.config import load_settings
from streams.errors import ConfigError
from streams.sink.engines.stripe_meter import make_meter_event_client
from streams.sink.engines.stripe_requests import DryRunClient

KEY = "sk_test_" + secrets.token_hex(16)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in list(os.environ):
        if name.startswith("METERSTREAM_"):
            monkeypatch.delenv(name)
    yield monkeypatch


@pytest.mark.parametrize("name, value", [
    ("DRY_RUN_PATH", "requests.jsonl"),
    ("RATE_LIMIT_PER_S", "5"),
    ("MAX_CONCURRENCY", "2"),
    ("TIMEOUT_S", "3"),
    ("MAX_RETRIES", "1"),
    ("AUTH_RETRY_S", "5"),
])
async def test_one_setting_keeps_dry_run(env: pytest.MonkeyPatch, tmp_path: Path, name: str,
                                   value: str) -> None:
    env.chdir(tmp_path)  # the default dry-run file is relative to the working directory
    if name == "DRY_RUN_PATH":
        value = str(tmp_path / value)
    env.setenv(f"METERSTREAM_STRIPE__{name}", value)
    settings = load_settings()
    assert settings.stripe.mode == "dry-run"
    client = make_meter_event_client(settings.stripe)
    assert isinstance(client, DryRunClient)
    await client.aclose()


@pytest.mark.parametrize("name, value", [
    ("API_BASE", "http://127.0.0.1:12111"),
    ("API_KEY", KEY),
    ("METER_EVENTS_BASE", "http://127.0.0.1:12111"),
    ("BATCH_SIZE", "10"),
])
def test_a_setting_dry_run_does_not_use_is_refused_by_name(env: pytest.MonkeyPatch, name: str,
                                                           value: str) -> None:
    env.setenv(f"METERSTREAM_STRIPE__{name}", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert f"METERSTREAM_STRIPE__{name} is not used in mode 'dry-run'" in text
    assert "METERSTREAM_STRIPE__MODE" in text
    assert KEY not in text and KEY[-16:] not in text


@pytest.mark.parametrize("mode, name, value", [
    ("v1", "DRY_RUN_PATH", "requests.jsonl"),
    ("v2", "DRY_RUN_PATH", "requests.jsonl"),
    ("v1", "METER_EVENTS_BASE", "http://127.0.0.1:1"),
    ("v1", "BATCH_SIZE", "10"),
])
def test_a_setting_v1_or_v2_does_not_use_is_refused_by_name(env: pytest.MonkeyPatch, mode: str,
                                                            name: str, value: str) -> None:
    env.setenv("METERSTREAM_STRIPE__MODE", mode)
    env.setenv("METERSTREAM_STRIPE__API_KEY", KEY)
    env.setenv(f"METERSTREAM_STRIPE__{name}", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"METERSTREAM_STRIPE__{name} is not used in mode '{mode}'" in str(info.value)


def test_the_mode_changes_only_when_set(env: pytest.MonkeyPatch) -> None:
    assert load_settings().stripe.mode == "dry-run"
    env.setenv("METERSTREAM_STRIPE__MODE", "v2")
    env.setenv("METERSTREAM_STRIPE__API_BASE", "http://127.0.0.1:12111")
    env.setenv("METERSTREAM_STRIPE__METER_EVENTS_BASE", "http://127.0.0.1:12112")
    env.setenv("METERSTREAM_STRIPE__BATCH_SIZE", "10")
    stripe = load_settings().stripe
    assert (stripe.mode, stripe.batch_size) == ("v2", 10)
    env.setenv("METERSTREAM_STRIPE__MODE", "v1")
    env.delenv("METERSTREAM_STRIPE__API_BASE")
    env.delenv("METERSTREAM_STRIPE__METER_EVENTS_BASE")
    env.delenv("METERSTREAM_STRIPE__BATCH_SIZE")
    with pytest.raises(ConfigError, match="mode 'v1' needs METERSTREAM_STRIPE__API_KEY"):
        load_settings()
