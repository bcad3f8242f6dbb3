"""The timestamp format: ISO-8601 date-times with a zone, or epoch milliseconds, in; one ISO-8601
UTC form with milliseconds out."""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta

from model_monitoring.schemas.rejection import SCHEMA, MessageRejected

# 9999-12-31T23:59:59.999Z: the last instant format_timestamp can write.
MAX_TIMESTAMP_MS = 253_402_300_799_999

# The same shape as the schemas' string timestamps: extended-format date and time (seconds and
# a fraction of up to 9 digits optional), separator T, t or space, zone Z, z, ±HH, ±HHMM or ±HH:MM.
_ISO_ZONED = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?"
    r"(?:([Zz])|([+-])([0-9]{2})(?::?([0-9]{2}))?)"
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MS_PER_DAY = 86_400_000


def parse_timestamp_ms(value: str | int) -> int:
    """Epoch milliseconds of an ISO-8601 date-time with a zone, or of epoch milliseconds.

    A fraction finer than a millisecond is truncated; a leap second (:60) counts as the next
    second's start. Naive date-times, impossible dates and instants outside 1970-01-01 ..
    9999-12-31T23:59:59.999Z raise MessageRejected("schema"). An integral float (JSON `1.7e12`,
    which JSON Schema counts as an integer) is accepted as epoch milliseconds.
    """
    if isinstance(value, str):
        ms = _parse_iso_ms(value)
    elif isinstance(value, bool):
        raise MessageRejected(SCHEMA, "timestamp: must be string or integer")
    elif isinstance(value, int):
        ms = value
    elif isinstance(value, float) and value.is_integer():
        ms = int(value)
    else:
        raise MessageRejected(SCHEMA, "timestamp: must be string or integer")
    if not 0 <= ms <= MAX_TIMESTAMP_MS:
        raise MessageRejected(SCHEMA, "timestamp: must be from 1970-01-01 to 9999-12-31 UTC")
    return ms


# The form this service writes (format_timestamp) and most producers send, validated by a narrower
# pattern (hours 00-23, minutes and seconds 00-59, ASCII digits) and read in C by `fromisoformat`:
# the same value as the general way, about 3× faster (tests/unit/test_timestamps.py). Anything
# else — another form of the pattern, a leap second, a date that does not exist — goes the
# general way, which reads it or says what is wrong.
_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _parse_iso_ms(text: str) -> int:
    if _CANONICAL.fullmatch(text) is not None:
        try:
            return (datetime.fromisoformat(text) - _EPOCH) // _MS
        except ValueError:
            pass  # no such date: the general way says so
    return _parse_iso_general(text)


def _parse_iso_general(text: str) -> int:
    match = _ISO_ZONED.fullmatch(text)
    if match is None:
        raise MessageRejected(SCHEMA, "timestamp: must be an ISO-8601 date-time with a zone, e.g. 2026-11-20T10:00:00Z")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        raise MessageRejected(SCHEMA, f"timestamp: no such date {year}-{month}-{day}") from None
    h, m, s = int(hour), int(minute), int(second or 0)
    if h > 23 or m > 59 or s > 60:
        raise MessageRejected(SCHEMA, f"timestamp: no such time {hour}:{minute}:{second or '00'}")
    millis = int((fraction + "00")[:3]) if fraction else 0
    offset_min = 0
    if zulu is None:
        oh, om = int(off_h), int(off_m or 0)
        if oh > 23 or om > 59:
            raise MessageRejected(SCHEMA, "timestamp: zone offset out of range")
        offset_min = oh * 60 + om
        if sign == "-":
            offset_min = -offset_min
    return days * _MS_PER_DAY + ((h * 60 + m - offset_min) * 60 + s) * 1000 + millis


def format_timestamp(ms: int) -> str:
    """The one output format: ISO-8601 UTC, millisecond precision, 'Z' (2026-11-20T10:00:00.000Z)."""
    if isinstance(ms, bool) or not isinstance(ms, int):
        raise TypeError(f"epoch milliseconds must be int, not {type(ms).__name__}")
    if not 0 <= ms <= MAX_TIMESTAMP_MS:
        raise ValueError(f"epoch milliseconds out of range: {ms}")
    seconds, millis = divmod(ms, 1000)
    t = time.gmtime(seconds)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{millis:03d}Z"
    )
