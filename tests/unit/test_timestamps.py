"""The timestamp parser's fast path (the canonical `YYYY-MM-DDTHH:MM:SS.sssZ`, read by slicing)
gives what the general way (the schema's pattern as a regular expression) gives, value or
rejection, for every text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_monitoring.schemas import timestamps
from model_monitoring.schemas.rejection import MessageRejected
from model_monitoring.schemas.timestamps import (
    MAX_TIMESTAMP_MS,
    _parse_iso_general,
    _parse_iso_ms,
    format_timestamp,
)


def outcome(parse, text: str) -> tuple[str, object]:
    try:
        return "ms", parse(text)
    except MessageRejected as exc:
        return "rejected", (exc.reason, exc.detail)


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_TIMESTAMP_MS))
def test_every_canonical_instant_reads_back(ms: int) -> None:
    text = format_timestamp(ms)
    assert _parse_iso_ms(text) == _parse_iso_general(text) == ms


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet="0123456789-T:.Zz+ t٣", min_size=24, max_size=24)
       | st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z", fullmatch=True))
def test_fast_path_agrees_with_the_pattern_on_any_text(text: str) -> None:
    assert outcome(_parse_iso_ms, text) == outcome(_parse_iso_general, text)


@pytest.mark.parametrize("text", [
    "2026-02-29T00:00:00.000Z",   # no such date
    "2026-13-01T00:00:00.000Z",
    "2026-11-20T24:00:00.000Z",   # no such time
    "2026-11-20T23:60:00.000Z",
    "2026-11-20T23:59:61.000Z",
    "2026-11-2٣T10:00:00.000Z",   # a digit, but not an ASCII one
    "2026-11-20T10:00:00.000z",   # other forms of the pattern: the general way
    "2026-11-20t10:00:00.000Z",
])
def test_edge_texts_agree(text: str) -> None:
    assert outcome(_parse_iso_ms, text) == outcome(_parse_iso_general, text)


def test_a_leap_second_is_the_next_seconds_start() -> None:
    assert _parse_iso_ms("2016-12-31T23:59:60.000Z") == _parse_iso_ms("2017-01-01T00:00:00.000Z")


def test_the_canonical_form_before_the_epoch_is_refused_as_before() -> None:
    assert outcome(_parse_iso_ms, "1969-12-31T23:59:59.999Z") == ("ms", -1)  # the range check is the caller's
    with pytest.raises(MessageRejected, match="1970-01-01"):
        timestamps.parse_timestamp_ms("1969-12-31T23:59:59.999Z")
