"""Secrets never leave the settings: not through repr, str, redacted() or a ConfigError.

The secret fields are the Stripe ``api_key``, the Kafka ``sasl_password`` and
``ssl_password``, and the worker's ``api_token``. Each test uses distinctive random
values and then searches every text the settings produce for them, including the
configuration errors raised when the secret itself is the invalid field, when it sits in a
malformed JSON environment variable, and when it comes from a TOML file.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.config import Settings, load_settings
from streams.errors import ConfigError

STRIPE_KEY = "sk_test_" + secrets.token_hex(16)
SASL_PASSWORD = "sasl-" + secrets.token_hex(16)
SSL_PASSWORD = "ssl-" + secrets.token_hex(16)
API_TOKEN = "tok-" + secrets.token_hex(16)
ALL = (STRIPE_KEY, SASL_PASSWORD, SSL_PASSWORD, API_TOKEN)


def assert_clean(text: str, *extra: str) -> None:
    for secret in (*ALL, *extra):
        assert secret not in text, f"a secret leaked into: {text[:500]}"
        # Not even a recognisable part of its random tail.
        assert secret[-16:] not in text, f"part of a secret leaked into: {text[:500]}"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    import os

    for name in list(os.environ):
        if name.startswith("METERSTREAM_"):
            monkeypatch.delenv(name)
    yield monkeypatch


def full_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("METERSTREAM_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("METERSTREAM_KAFKA__SASL_USERNAME", "meterstream")
    monkeypatch.setenv("METERSTREAM_KAFKA__SASL_PASSWORD", SASL_PASSWORD)
    monkeypatch.setenv("METERSTREAM_KAFKA__SSL_PASSWORD", SSL_PASSWORD)
    monkeypatch.setenv("METERSTREAM_STRIPE__MODE", "v1")
    monkeypatch.setenv("METERSTREAM_STRIPE__API_KEY", STRIPE_KEY)
    monkeypatch.setenv("METERSTREAM_WORKER__API_TOKEN", API_TOKEN)


def test_repr_str_and_redacted_hide_every_secret(clean_env: pytest.MonkeyPatch) -> None:
    full_env(clean_env)
    s = load_settings()
    # The values are there for the code that needs them...
    assert s.stripe.api_key is not None and s.stripe.api_key.get_secret_value() == STRIPE_KEY
    assert s.kafka.sasl_password is not None
    assert s.kafka.sasl_password.get_secret_value() == SASL_PASSWORD
    assert s.worker.api_token is not None and s.worker.api_token.get_secret_value() == API_TOKEN
    # ...and nowhere else.
    texts = [repr(s), str(s), repr(s.kafka), str(s.kafka), repr(s.stripe), str(s.worker),
             f"{s!r} {s}", str(s.redacted()), s.model_dump_json()]
    for text in texts:
        assert_clean(text)
    red = s.redacted()
    assert red["kafka"]["sasl_password"] == "**********"
    assert red["kafka"]["ssl_password"] == "**********"
    assert red["stripe"]["api_key"] == "**********"
    assert red["worker"]["api_token"] == "**********"
    # An unset secret stays visibly unset.
    clean_env.delenv("METERSTREAM_WORKER__API_TOKEN")
    assert Settings().redacted()["worker"]["api_token"] is None


def test_redacted_is_plain_data_without_secrets(clean_env: pytest.MonkeyPatch) -> None:
    import json

    full_env(clean_env)
    assert_clean(json.dumps(load_settings().redacted()))


# Each case sets environment variables where a secret is, or sits next to, the invalid
# field; the error must name the setting, never the value.
BAD_ENVIRONMENTS: dict[str, dict[str, str]] = {
    "stripe key of the wrong shape": {"METERSTREAM_STRIPE__API_KEY": "pk_live_" + STRIPE_KEY[8:]},
    "stripe key with spaces": {"METERSTREAM_STRIPE__API_KEY": " " + STRIPE_KEY + " x"},
    "sasl password without user": {"METERSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
                                   "METERSTREAM_KAFKA__SASL_PASSWORD": SASL_PASSWORD},
    "sasl password with a bad mechanism": {"METERSTREAM_KAFKA__SASL_MECHANISM": SASL_PASSWORD,
                                           "METERSTREAM_KAFKA__SASL_PASSWORD": SASL_PASSWORD},
    "malformed kafka JSON holding the password": {
        "METERSTREAM_KAFKA": '{"sasl_password": "' + SASL_PASSWORD + '", '},
    "kafka JSON with the password of the wrong type": {
        "METERSTREAM_KAFKA": '{"sasl_password": ["' + SASL_PASSWORD + '"]}'},
    "misspelt password field": {"METERSTREAM_KAFKA": '{"sasl_passwd": "' + SASL_PASSWORD + '"}'},
    "malformed stripe JSON holding the key": {
        "METERSTREAM_STRIPE": '{"api_key": "' + STRIPE_KEY + '", "mode": '},
    "stripe JSON with a bad mode": {
        "METERSTREAM_STRIPE": '{"api_key": "' + STRIPE_KEY + '", "mode": "' + API_TOKEN + '"}'},
    "token of the wrong type": {"METERSTREAM_WORKER": '{"api_token": {"t": "' + API_TOKEN + '"}}'},
    "misspelt stripe key setting": {"METERSTREAM_STRIPE__APIKEY": STRIPE_KEY},
    "secret in a non-secret field": {"METERSTREAM_WORKER__WEB_PORT": API_TOKEN,
                                     "METERSTREAM_WORKER__API_TOKEN": API_TOKEN},
    "everything wrong at once": {"METERSTREAM_STRIPE__API_KEY": "x" + STRIPE_KEY,
                                 "METERSTREAM_KAFKA__SECURITY_PROTOCOL": SASL_PASSWORD,
                                 "METERSTREAM_KAFKA__SASL_PASSWORD": SASL_PASSWORD,
                                 "METERSTREAM_KAFKA__SSL_PASSWORD": SSL_PASSWORD,
                                 "METERSTREAM_WORKER__API_TOKEN": API_TOKEN,
                                 "METERSTREAM_WORKER__LOG_LEVEL": API_TOKEN},
}


@pytest.mark.parametrize("case", sorted(BAD_ENVIRONMENTS))
def test_config_error_never_contains_a_secret(clean_env: pytest.MonkeyPatch, case: str) -> None:
    for name, value in BAD_ENVIRONMENTS[case].items():
        clean_env.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    exc = info.value
    assert exc.problems, "a ConfigError lists its problems"
    for text in (str(exc), repr(exc), *exc.problems, str(exc.__cause__), str(exc.__context__)):
        assert_clean(text)
    # It names the setting: by its variable, or (malformed JSON) by its field.
    assert "METERSTREAM_" in str(exc) or 'for field "' in str(exc), str(exc)


def test_secret_field_named_when_it_is_the_invalid_one(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("METERSTREAM_STRIPE__API_KEY", "pk_live_" + STRIPE_KEY[8:])
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "api_key" in str(info.value)
    assert_clean(str(info.value))


@pytest.mark.parametrize("body", [
    # Valid TOML with an invalid secret, valid TOML with a secret beside an invalid field,
    # and TOML that does not parse on the secret's line.
    f'[stripe]\nmode = "v1"\napi_key = "pk_live_{STRIPE_KEY[8:]}"\n',
    f'[kafka]\nsasl_password = "{SASL_PASSWORD}"\nsecurity_protocol = "SASL_SSL"\n',
    f'[worker]\napi_token = "{API_TOKEN}"\nweb_port = "{API_TOKEN}"\n',
    f'[kafka]\nsasl_password = "{SASL_PASSWORD}\n',
    f'[stripe]\napi_key = {STRIPE_KEY}\n',
])
def test_config_file_errors_never_contain_a_secret(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, body: str
) -> None:
    path = tmp_path / "meterstream.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=path)
    assert_clean(str(info.value))
    assert_clean(repr(info.value))


def test_cli_bad_config_exits_2_without_the_secret(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams.cli import main

    clean_env.setenv("METERSTREAM_STRIPE__API_KEY", "pk_live_" + STRIPE_KEY[8:])
    clean_env.setenv("METERSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    clean_env.setenv("METERSTREAM_KAFKA__SASL_PASSWORD", SASL_PASSWORD)
    clean_env.setenv("METERSTREAM_WORKER__API_TOKEN", API_TOKEN)
    assert main(["topics", "create"]) == 2
    out = capsys.readouterr()
    assert "METERSTREAM_STRIPE" in out.err and "METERSTREAM_KAFKA" in out.err
    assert_clean(out.out + out.err)
