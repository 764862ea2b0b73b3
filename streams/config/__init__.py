"""Settings: the only module that reads the environment.

Sources, highest priority first: explicit keyword arguments, environment variables with
the prefix ``METERSTREAM_`` (nested fields joined by ``__``, e.g.
``METERSTREAM_KAFKA__BOOTSTRAP_SERVERS``; lists and tables as JSON, e.g.
``METERSTREAM_METERS='[{"name": "cpu_seconds", ...}]'``), then the TOML file named by
``METERSTREAM_CONFIG`` (or passed as ``load_settings(config_file=...)``), then defaults.

Settings are frozen and loaded once. Every invalid field is reported at once, by its
environment variable name, with what is allowed (:class:`streams.errors.ConfigError`).
Secrets are ``SecretStr``: masked in repr, str and :meth:`Settings.redacted`, and their
values never appear in a configuration error.
"""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic import model_validator as _model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from streams.core.horizons import max_age_ms_for
from streams.errors import ConfigError

__all__ = [
    "AggregatorSettings",
    "KafkaSettings",
    "MeterSettings",
    "MetronomeSettings",
    "Settings",
    "SinkSettings",
    "StripeSettings",
    "TopicSettings",
    "WorkerSettings",
    "effective_max_age_ms",
    "load_settings",
]

ENV_PREFIX = "METERSTREAM_"
CONFIG_FILE_ENV = "METERSTREAM_CONFIG"
_SECRET_FIELDS = frozenset({"api_key", "sasl_password", "api_token", "ssl_password"})

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def _exact_decimal(value: Any, *, what: str) -> Decimal:
    """Parse a price or threshold: a decimal string or int, never a float."""
    if isinstance(value, Decimal):
        parsed = value
    elif isinstance(value, bool | float):
        raise ValueError(
            f"{what} must be a decimal string such as \"0.0042\" or an integer, not a float"
        )
    elif isinstance(value, int | str):
        try:
            parsed = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{what} must be a decimal number, e.g. \"0.0042\"") from None
    else:
        raise ValueError(f"{what} must be a decimal string or an integer")
    if not parsed.is_finite() or parsed < 0:
        raise ValueError(f"{what} must be a finite number >= 0")
    return parsed


class KafkaSettings(BaseModel):
    """How to reach the Kafka cluster."""

    model_config = _FROZEN

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "meterstream"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None

    @_model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_"):
            missing = [
                name
                for name, val in (
                    ("sasl_mechanism", self.sasl_mechanism),
                    ("sasl_username", self.sasl_username),
                    ("sasl_password", self.sasl_password),
                )
                if val is None
            ]
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs {', '.join(missing)}"
                )
        return self


class TopicSettings(BaseModel):
    """Topic names, partition counts and retention."""

    model_config = _FROZEN

    events: str = "usage.events"
    events_dlq: str = "usage.events.dlq"
    summaries: str = "usage.summaries"
    summaries_dlq: str = "usage.summaries.dlq"
    alerts: str = "usage.alerts"
    customers: str = "usage.customers"
    partitions: int = Field(default=8, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=16)
    # Long enough to replay a full billing period plus Stripe's 35-day horizon.
    events_retention_ms: int = Field(default=40 * 86_400_000, ge=3_600_000)
    outputs_retention_ms: int = Field(default=40 * 86_400_000, ge=3_600_000)


class MeterSettings(BaseModel):
    """One meter: what we aggregate, how it is priced and which Stripe meter receives it."""

    model_config = _FROZEN

    name: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")
    stripe_event_name: str = Field(min_length=1, max_length=100)
    aggregation: Literal["sum", "count", "max"] = "sum"
    unit_price_minor: Decimal = Decimal(0)
    # "none": a plain Stripe sum meter that receives deltas. "hour"/"day": a pre-aggregated
    # Stripe meter (event_time_window) where the latest event of a window wins, so the
    # sink resends the window total.
    stripe_window: Literal["none", "hour", "day"] = "none"

    @field_validator("unit_price_minor", mode="before")
    @classmethod
    def _price(cls, value: Any) -> Decimal:
        return _exact_decimal(value, what="unit_price_minor")

    @_model_validator(mode="after")
    def _max_needs_window(self) -> MeterSettings:
        if self.aggregation == "max" and self.stripe_window == "none":
            raise ValueError(
                "aggregation 'max' cannot be sent as deltas: set stripe_window to 'hour' or "
                "'day' (a pre-aggregated Stripe meter)"
            )
        return self


def _default_meters() -> tuple[MeterSettings, ...]:
    # Prices in US cents per unit: list prices of a typical data platform.
    return (
        MeterSettings(name="cpu_seconds", stripe_event_name="cpu_seconds",
                      unit_price_minor=Decimal("0.0015")),
        MeterSettings(name="gpu_seconds", stripe_event_name="gpu_seconds",
                      unit_price_minor=Decimal("0.08")),
        MeterSettings(name="memory_gb_seconds", stripe_event_name="memory_gb_seconds",
                      unit_price_minor=Decimal("0.0002")),
        MeterSettings(name="executions", stripe_event_name="executions",
                      aggregation="count", unit_price_minor=Decimal("0.01")),
    )


class AggregatorSettings(BaseModel):
    """Windows, watermark, dedup, billing period and thresholds."""

    model_config = _FROZEN

    window_s: int = Field(default=3600, ge=60, le=86_400)
    grace_s: int = Field(default=300, ge=0, le=86_400)
    dedup_horizon_s: int = Field(default=48 * 3600, ge=3600, le=40 * 86_400)
    # An idle partition's watermark follows wall clock, at most this far behind it.
    idle_close_after_s: int = Field(default=60, ge=1, le=86_400)
    max_future_s: int = Field(default=300, ge=0, le=86_400)
    max_age_s: int = Field(default=35 * 86_400, ge=3600, le=35 * 86_400)
    billing_period: Literal["month"] = "month"
    currency: str = Field(default="usd", pattern=r"^[a-z]{3}$")
    thresholds_minor: tuple[Decimal, ...] = (Decimal(10_000),)
    batch_max_events: int = Field(default=20_000, ge=1, le=1_000_000)
    batch_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    batch_max_ms: int = Field(default=50, ge=1, le=60_000)
    batch_max_closes: int = Field(default=250, ge=1, le=1_000_000)

    @field_validator("thresholds_minor", mode="before")
    @classmethod
    def _thresholds(cls, value: Any) -> tuple[Decimal, ...]:
        if isinstance(value, str | int | float | Decimal):
            value = [value]
        return tuple(_exact_decimal(v, what="threshold") for v in value)

    @_model_validator(mode="after")
    def _window_divides_day(self) -> AggregatorSettings:
        if 86_400 % self.window_s:
            raise ValueError("window_s must divide a day (e.g. 60, 300, 900, 3600, 86400)")
        return self


# Settings that only one or two modes use. Setting one explicitly in another mode is a
# start-up error that names it: the mode changes only when STRIPE__MODE says so, and a key
# or a host given to a dry-run sink means the operator expected Stripe to be called.
_MODE_ONLY: dict[str, tuple[str, ...]] = {
    "api_key": ("v1", "v2"),
    "api_base": ("v1", "v2"),
    "meter_events_base": ("v2",),
    "batch_size": ("v2",),
    "dry_run_path": ("dry-run",),
}


class StripeSettings(BaseModel):
    """The Stripe sink.

    ``mode`` defaults to ``dry-run`` and changes only when set: no other setting implies a
    mode. A setting the chosen mode does not use (see ``_MODE_ONLY``) is refused.
    """

    model_config = _FROZEN

    mode: Literal["v1", "v2", "dry-run"] = "dry-run"
    api_key: SecretStr | None = None
    # Override Stripe's hosts, for the fake Stripe or stripe-mock.
    api_base: str | None = None
    meter_events_base: str | None = None
    dry_run_path: Path = Path("stripe-requests.jsonl")
    # None: 25/s with a test key (Stripe's sandbox limit), 1000/s with a live key.
    rate_limit_per_s: float | None = Field(default=None, gt=0, le=100_000)
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    max_retries: int = Field(default=8, ge=0, le=100)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    batch_size: int = Field(default=100, ge=1, le=100)
    # While Stripe refuses the key (401/403), each refused call tries again this often.
    auth_retry_s: float = Field(default=60.0, gt=0, le=3600)

    @property
    def live(self) -> bool:
        key = self.api_key.get_secret_value() if self.api_key else ""
        return key.startswith(("sk_live_", "rk_live_"))

    @property
    def effective_rate_limit_per_s(self) -> float:
        if self.rate_limit_per_s is not None:
            return self.rate_limit_per_s
        return 1000.0 if self.live else 25.0

    @_model_validator(mode="after")
    def _key_shape(self) -> StripeSettings:
        if self.api_key is not None:
            key = self.api_key.get_secret_value()
            if not key.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")):
                raise ValueError(
                    "api_key must be a Stripe secret or restricted key (sk_test_..., sk_live_..., "
                    "rk_test_..., rk_live_...)"
                )
        return self

    @_model_validator(mode="after")
    def _fits_mode(self) -> StripeSettings:
        misplaced = [
            name for name, modes in _MODE_ONLY.items()
            if name in self.model_fields_set and self.mode not in modes
        ]
        if misplaced:
            names = ", ".join(f"{ENV_PREFIX}STRIPE__{n.upper()}" for n in misplaced)
            wanted = sorted({m for n in misplaced for m in _MODE_ONLY[n]})
            raise ValueError(
                f"{names} {'is' if len(misplaced) == 1 else 'are'} not used in mode "
                f"{self.mode!r} ({ENV_PREFIX}STRIPE__MODE"
                f"{', the default' if 'mode' not in self.model_fields_set else ''}); "
                f"set {ENV_PREFIX}STRIPE__MODE to {' or '.join(repr(m) for m in wanted)}, "
                "or remove the setting"
            )
        if self.mode != "dry-run" and self.api_key is None and self.api_base is None:
            raise ValueError(
                f"mode {self.mode!r} needs {ENV_PREFIX}STRIPE__API_KEY (or "
                f"{ENV_PREFIX}STRIPE__API_BASE pointing at a fake Stripe); use mode 'dry-run' "
                "to only write requests to a file"
            )
        return self


class SinkSettings(BaseModel):
    """Which billing engine this sink process feeds (one engine per process).

    The worker reads it too: its ``too_old`` bound follows the engine's horizon
    (:func:`effective_max_age_ms`). When two sinks feed both engines, give the worker the
    stricter one (``metronome``).
    """

    model_config = _FROZEN

    engine: Literal["stripe", "metronome"] = "stripe"


class MetronomeSettings(BaseModel):
    """The Metronome engine (``SINK__ENGINE=metronome``): ``POST /v1/ingest``.

    The bearer token is checked when the sink starts, not here, so that a worker sharing
    the environment does not need it.
    """

    model_config = _FROZEN

    api_token: SecretStr | None = None
    # Override Metronome's host (https://api.metronome.com), for the fake Metronome.
    api_base: str | None = None
    # Our meter name -> Metronome event_type (default: the meter name itself).
    event_types: dict[str, str] = Field(default_factory=dict)
    # The event property that carries the value (a SUM billable metric aggregates it).
    value_property: str = Field(default="value", min_length=1, max_length=128)
    # Our meter name -> billable metric id, for reconcile (default: the billable metric
    # whose name is the meter's event_type).
    billable_metric_ids: dict[str, str] = Field(default_factory=dict)
    rate_limit_per_s: float = Field(default=100.0, gt=0, le=100_000)
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    max_retries: int = Field(default=8, ge=0, le=100)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    # Events per request: Metronome takes 1 to 100.
    batch_size: int = Field(default=100, ge=1, le=100)
    auth_retry_s: float = Field(default=60.0, gt=0, le=3600)

    def event_type(self, meter: str) -> str:
        return self.event_types.get(meter, meter)


class WorkerSettings(BaseModel):
    """The worker process: group membership, state, web server, logging."""

    model_config = _FROZEN

    app_id: str = Field(default="meterstream", pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    # The static group member id (Kafka's group.instance.id): a worker restarted under the
    # same id gets its partitions back at once, without a rebalance. Two running workers
    # must never share one. None: the host name and the web port, unique on a host.
    instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,200}$")
    state_dir: Path = Path("./data")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65_535)  # Faust refuses port 0
    # The URL other workers forward usage queries to. None: http://{web_host}:{web_port},
    # with the host name in place of a wildcard address (0.0.0.0, ::).
    advertised_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+$")
    api_token: SecretStr | None = None
    # One bound on RocksDB's memory for the whole process: a block cache shared by every
    # partition's database, with their write buffers charged against it.
    rocksdb_memory_mb: int = Field(default=64, ge=16, le=65_536)
    # A consumer whose heartbeats stop for this long leaves the group and its partitions
    # move; a restarted worker with the same instance_id comes back within it unnoticed.
    session_timeout_s: float = Field(default=10.0, ge=6.0, le=300.0)
    # Compression of what the worker writes (changelog, summaries, alerts, dead letters).
    # lz4 costs the worker 12-19% of its CPU (measured, benchmarks/README.md); the changelog
    # is compacted and the outputs are small, so none is the default on a fast network.
    compression: Literal["none", "lz4", "zstd", "gzip"] = "none"
    # "Caught up" (GET /ready's caught_up, meterstream_caught_up): every owned partition's
    # consumer lag is at most this many records.
    caught_up_max_lag: int = Field(default=1000, ge=0, le=100_000_000)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def effective_instance_id(self) -> str:
        if self.instance_id is not None:
            return self.instance_id
        import socket

        return f"{socket.gethostname()}-{self.web_port}"

    @property
    def effective_advertised_url(self) -> str:
        if self.advertised_url is not None:
            return self.advertised_url
        host = self.web_host
        if host in ("0.0.0.0", "::", ""):
            import socket

            host = socket.gethostname()
        return f"http://{host}:{self.web_port}"


class Settings(BaseSettings):
    """All of meterstream's settings."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        case_sensitive=False,
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    meters: tuple[MeterSettings, ...] = Field(default_factory=_default_meters)
    aggregator: AggregatorSettings = AggregatorSettings()
    stripe: StripeSettings = StripeSettings()
    worker: WorkerSettings = WorkerSettings()
    sink: SinkSettings = SinkSettings()
    metronome: MetronomeSettings = MetronomeSettings()

    @_model_validator(mode="after")
    def _unique_meters(self) -> Settings:
        if not self.meters:
            raise ValueError("meters: configure at least one meter")
        names = [m.name for m in self.meters]
        events = [m.stripe_event_name for m in self.meters]
        if len(set(names)) != len(names):
            raise ValueError("meter names must be unique")
        if len(set(events)) != len(events):
            raise ValueError(
                "stripe_event_name must be unique: a Stripe event name feeds one meter"
            )
        unknown = sorted(set(self.metronome.event_types) - set(names))
        if unknown:
            raise ValueError("METERSTREAM_METRONOME__EVENT_TYPES names meters that are not "
                             f"configured: {', '.join(unknown)}")
        types = [self.metronome.event_type(n) for n in names]
        if len(set(types)) != len(types):
            raise ValueError("METERSTREAM_METRONOME__EVENT_TYPES must be unique: an event_type "
                             "feeds one meter")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get(CONFIG_FILE_ENV)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)

    def meter(self, name: str) -> MeterSettings | None:
        """The meter called ``name``, or None."""
        for m in self.meters:
            if m.name == name:
                return m
        return None

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with every secret replaced by ``'**********'``."""
        redacted: dict[str, Any] = _redact(self.model_dump(mode="json"))
        return redacted


def effective_max_age_ms(settings: Settings) -> int:
    """The worker's ``too_old`` bound in ms: ``AGGREGATOR__MAX_AGE_S``, lowered so that
    whatever the worker accepts, the engine of ``SINK__ENGINE`` can still bill after the
    window closes (see :mod:`streams.core.horizons`)."""
    a = settings.aggregator
    return max_age_ms_for(engine=settings.sink.engine, window_s=a.window_s,
                          grace_s=a.grace_s, max_age_s=a.max_age_s)


def _redact(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            k: ("**********" if k in _SECRET_FIELDS and v is not None else _redact(v))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_redact(v) for v in data]
    return data


def _env_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if not isinstance(p, int)]
    indices = [str(p) for p in loc if isinstance(p, int)]
    name = ENV_PREFIX + "__".join(parts).upper()
    return name + (f" (item {', '.join(indices)})" if indices else "")


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"].removeprefix("Value error, ")
        where = _env_name(loc) if loc else "settings"
        problems.append(f"{where}: {msg}")
    return problems


def load_settings(*, config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Load and validate the settings once; raise ConfigError listing every problem.

    ``config_file`` takes precedence over ``METERSTREAM_CONFIG``. Keyword overrides win over
    both the environment and the file.
    """
    previous = os.environ.get(CONFIG_FILE_ENV)
    try:
        if config_file is not None:
            path = Path(config_file)
            if not path.is_file():
                raise ConfigError([f"{CONFIG_FILE_ENV}: no such file: {path}"])
            os.environ[CONFIG_FILE_ENV] = str(path)
        elif previous and not Path(previous).is_file():
            raise ConfigError([f"{CONFIG_FILE_ENV}: no such file: {previous}"])
        try:
            return Settings(**overrides)
        except ValidationError as exc:
            problems = _describe(exc)
        except ValueError as exc:  # malformed JSON in an env var, unreadable TOML
            problems = [_scrub(str(exc))]
        # Raised outside the handler, so that the original error, whose text may quote a
        # secret, is not kept as the ConfigError's __context__ either.
        raise ConfigError(problems) from None
    finally:
        if config_file is not None:
            if previous is None:
                os.environ.pop(CONFIG_FILE_ENV, None)
            else:
                os.environ[CONFIG_FILE_ENV] = previous


def _scrub(message: str) -> str:
    """Remove the value of every secret found in the environment from a message."""
    for name, value in os.environ.items():
        if name.startswith(ENV_PREFIX) and any(s.upper() in name for s in _SECRET_FIELDS) and value:
            message = message.replace(value, "**********")
    return message
