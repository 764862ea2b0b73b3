"""Logging setup: text or JSON lines on stderr, never a secret.

Log calls use %-style arguments; the JSON formatter renders ``record.getMessage()`` and
adds any ``extra`` fields among customer, partition and offset.
"""

from __future__ import annotations

import logging
import sys

import orjson

__all__ = ["RetriedErrorsAreWarnings", "setup_logging"]

_EXTRA = ("customer", "partition", "offset", "topic")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in _EXTRA:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


# aiokafka logs these at ERROR although the client retries them and goes on: the group
# coordinator is not known yet (a new broker creates its offsets topic on the first join)
# or moved. No ERROR line without an error: they are logged as warnings.
_RETRIED_AT_ERROR = ("Group Coordinator Request failed",)


class RetriedErrorsAreWarnings(logging.Filter):
    """Demote aiokafka's ERROR lines for conditions it retries to WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.levelno == logging.ERROR and record.name.startswith("aiokafka")
                and str(record.msg).startswith(_RETRIED_AT_ERROR)):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once: one handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RetriedErrorsAreWarnings())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx (under metronome-sdk) logs every request at INFO; the sink logs outcomes.
    logging.getLogger("httpx").setLevel(logging.WARNING)
