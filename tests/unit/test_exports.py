"""The public API (httpx style): streams.sdk's ``__all__`` lists exactly the module's
public names, and streams re-exports the same objects."""

from __future__ import annotations

import subprocess
import sys
import types

import streams
import streams.sdk


def test_sdk_all_names_what_a_compute_worker_uses() -> None:
    for name in ("UsageProducer", "UsageReporter", "FsyncPolicy", "Compression",
                 "prepare_event", "encode_event", "uuid7_str", "EventValidationError",
                 "ProducerError", "KafkaSettings", "load_settings"):
        assert name in streams.sdk.__all__, name


def test_sdk_all_is_every_public_name_of_the_module() -> None:
    public = {name for name, value in vars(streams.sdk).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert sorted(streams.sdk.__all__) == sorted(public)


def test_streams_reexports_the_sdk() -> None:
    assert streams.__all__ == streams.sdk.__all__
    for name in streams.__all__:
        assert getattr(streams, name) is getattr(streams.sdk, name), name
    assert set(streams.__all__) <= set(dir(streams))


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        streams.UsageConsumer  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "UsageConsumer" in str(exc)
    else:
        raise AssertionError("streams.UsageConsumer resolved")


def test_import_streams_imports_nothing_else() -> None:
    """``import streams`` is cheap; ``from streams import UsageProducer`` brings the SDK
    and none of the worker's, sink's or tools' libraries."""
    code = (
        "import sys, streams; before = sorted(m for m in sys.modules if m.startswith('streams'));"
        "from streams import UsageProducer;"
        "heavy = [m for m in ('faust', 'rocksdict', 'stripe', 'metronome', 'aiohttp',"
        " 'prometheus_client', 'rich', 'boto3', 'pyarrow') if m in sys.modules];"
        "print(before, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.strip()
    assert out == "['streams'] []"
