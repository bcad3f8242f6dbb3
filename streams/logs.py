"""Logging: one JSON object per line (what the runbook greps), with the record's `fields`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

REPEAT_EVERY_SECONDS = 30.0


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class RepeatedLinesFilter(logging.Filter):
    """The first line of each kind (logger and message template) of the Kafka client, then at
    most one every `every` seconds, which counts the lines held back (`repeatsSuppressed`).

    Why: aiokafka logs every failed reconnect, metadata refresh, fetch and coordinator lookup
    at error level, several times a second per connection. An Apache Kafka broker killed and
    restarted (about 25 s down) made one worker write ~7,600 such lines (found by
    bench/reliability.py --engine kafka, broker killed mid-ingest). Our own loggers pass as they are."""

    def __init__(self, prefixes: tuple[str, ...] = ("aiokafka",), every: float = REPEAT_EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.every = every
        self.clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # kind -> (last let through, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        kind = (record.name, str(record.msg))
        now = self.clock()
        last, held = self._seen.get(kind, (None, 0))
        if last is not None and now - last < self.every:
            self._seen[kind] = (last, held + 1)
            return False
        self._seen[kind] = (now, 0)
        if held:
            fields = getattr(record, "fields", None)
            record.fields = {**(fields if isinstance(fields, dict) else {}), "repeatsSuppressed": held}
        return True


def logging_config(level: str) -> dict[str, Any]:
    """dictConfig for the worker: JSON lines on stderr; faust's chatter at warning."""
    lvl = level.upper()
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": {"()": "model_monitoring.streams.logs.JsonLineFormatter"}},
        "filters": {"repeats": {"()": "model_monitoring.streams.logs.RepeatedLinesFilter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr", "filters": ["repeats"]}},
        "root": {"handlers": ["stderr"], "level": "WARNING"},
        "loggers": {"model_monitoring": {"level": lvl},
                    "faust": {"level": "WARNING" if lvl != "DEBUG" else "INFO"},
                    "aiokafka": {"level": "ERROR"}, "mode": {"level": "WARNING"}},
    }
