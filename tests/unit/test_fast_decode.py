"""The input topics' fast path (schemas/fast_decode.py) against the full way it stands in for.

The property: for any batch of messages, parsing with the fast path gives exactly what the full
way gives alone (orjson, the JSON Schemas through fastjsonschema, `from_dict`): the same records,
with the same types (`repr`: 1 is not 1.0, -0.0 is not 0.0), and the same dead letters, reason,
detail, bytes and index. The documents are generated near the schemas (every field valid or
wild: big and huge numbers, booleans, long and empty strings, wrong types, missing and extra
fields, feature maps over the cap), as single records and envelopes, then written as JSON text
with or without ASCII escapes, and some are mangled as text (duplicate keys, lone surrogates,
truncation, invalid UTF-8, a byte-order mark). And the fast path does the work: every valid
record of the common shape is decoded there."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_monitoring.agents.forwarded import parse_forwarded
from model_monitoring.agents.ingest import envelope_items, parse_messages
from model_monitoring.schemas.fast_decode import FastDecoder
from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.schemas.validation import Validators
from model_monitoring.tables.forwarding import Origin, envelope_of

CAP = 4  # features per record: small, so that maps over the cap come up
MAX_BYTES = 1 << 16
VALIDATORS = Validators(max_features=CAP)
MAKE: dict[str, Callable[[Any], Any]] = {"features": InferenceRecord.from_dict, "outcomes": OutcomeRecord.from_dict}
FAST = {kind: FastDecoder(kind, CAP, MAX_BYTES) for kind in MAKE}


class Msg(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


numbers = st.one_of(
    st.integers(-10, 10), st.integers(-(2**70), 2**70), st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1]),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0.0, -0.0, 1.0, 1e308, -1e308, 5e-324]))
texts = st.one_of(st.text(max_size=8), st.text(min_size=250, max_size=260), st.text(min_size=1020, max_size=1030),
                  st.sampled_from(["", "a", "é", "😀", "\x00"]))
wild = st.recursive(st.one_of(st.none(), st.booleans(), numbers, texts),
                    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
                    max_leaves=4)
ids = st.one_of(st.text(min_size=1, max_size=12), texts, wild)
timestamps = st.one_of(
    st.integers(0, 253402300799999), st.sampled_from([-1, 253402300799999 + 1, 1700000000000.0, True]),
    st.builds(lambda y, mo, d, h, mi, z: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:00{z}",
              st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25), st.integers(0, 61),
              st.sampled_from(["Z", "+01:00", "-0530", "", "z", "+24:00"])),
    st.sampled_from(["2026-11-28T10:00:00.123456789Z", "2026-02-29T00:00:00Z", "2024-02-29 23:59:59+00"]), wild)
feature_values = st.one_of(st.none(), st.booleans(), numbers, texts)
feature_maps = st.one_of(st.dictionaries(st.text(max_size=4) | texts, feature_values, max_size=CAP + 1), wild)


good_ids = st.text(min_size=1, max_size=8)
good_numbers = st.floats(-1e9, 1e9) | st.integers(-1000, 1000)
GOOD: dict[str, st.SearchStrategy[Any]] = {
    "predictionId": good_ids, "tenantId": good_ids, "modelId": good_ids, "modelVersion": good_ids,
    "timestamp": st.integers(0, 253402300799999), "prediction": good_numbers, "outcome": good_numbers,
    "segment": st.none() | st.text(max_size=8),
    "features": st.dictionaries(st.text(min_size=1, max_size=4), st.none() | st.booleans() | good_numbers
                                | st.text(max_size=4), min_size=CAP - 1, max_size=CAP + 1)}


@st.composite
def documents(draw: st.DrawFn, kind: str) -> Any:
    """A record whose fields are each valid or wild: mostly valid (one or two fields off, the
    feature map at, under or over the cap) or anything."""
    fields: dict[str, st.SearchStrategy[Any]] = {
        "predictionId": ids, "tenantId": ids, "modelId": ids, "timestamp": timestamps}
    if kind == "features":
        fields |= {"modelVersion": ids, "prediction": numbers | wild, "features": feature_maps,
                   "segment": st.none() | texts | wild}
    else:
        fields |= {"outcome": numbers | wild}
    mostly_valid = draw(st.booleans())
    doc: dict[str, Any] = {}
    for name, strategy in fields.items():
        if draw(st.integers(0, 19 if mostly_valid else 9)) == 0:
            continue  # missing (segment may be)
        good = mostly_valid and draw(st.integers(0, 7)) > 0
        doc[name] = draw(GOOD[name] if good else strategy)
    if draw(st.booleans()):
        doc |= draw(st.dictionaries(st.sampled_from(["extra", "records", "x"]), wild, max_size=2))
    return doc if draw(st.integers(0, 19)) else draw(wild)


def mangle(draw: st.DrawFn, raw: bytes) -> bytes:
    how = draw(st.integers(0, 12))
    if how == 0 and raw.startswith(b"{") and len(raw) > 2:
        return b'{"prediction":1,' + raw[1:]  # a duplicate key (the later one wins in both)
    if how == 1:
        return raw.replace(b'"a"', b'"\\ud800"', 1)  # a lone surrogate
    if how == 2 and len(raw) > 2:
        return raw[: draw(st.integers(1, len(raw) - 1))]
    if how == 3:
        return raw.replace(b'"', b'"\xff', 1)
    if how == 4:
        return b"\xef\xbb\xbf" + raw
    if how == 5:
        return b" \n" + raw + b"\t"
    if how in (6, 7, 8) and raw.startswith(b"{") and len(raw) > 2:
        # a field the schemas do not name, holding what orjson refuses (or accepts: a pair)
        extra = draw(st.sampled_from([b"1e400", b'"\\ud800"', b'"\xff"', b'"\\ud83d\\ude00"', b"123456789012345678901"]))
        return b'{"zz":' + extra + b"," + raw[1:]
    if how == 9:
        return raw.replace(b'"features": {', b'"features": {"s": "\\udc00", ', 1)
    return raw


@st.composite
def messages(draw: st.DrawFn, kind: str) -> list[Msg]:
    out = []
    for offset in range(draw(st.integers(1, 4))):
        if kind == "features" and draw(st.booleans()):
            obj: Any = {"records": draw(st.lists(documents(kind), max_size=3))}
            if draw(st.integers(0, 5)) == 0:
                obj["predictionId"] = "p"
        else:
            obj = draw(documents(kind))
        try:
            raw = json.dumps(obj, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
        except ValueError:
            raw = b"[]"
        out.append(Msg("t", 0, offset, b"k", mangle(draw, raw)))
    return out


def parsed(msgs: list[Msg], kind: str, fast: FastDecoder | None) -> tuple[Any, ...]:
    p = parse_messages(msgs, kind, VALIDATORS, MAX_BYTES, MAKE[kind], fast)
    envelopes = {offset: orjson.loads(envelope_of(envelope_items(items))) for offset, items in p.envelopes.items()}
    return repr(p.records), p.letters, envelopes


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_fast_path_parses_every_batch_exactly_as_the_full_way(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["features", "outcomes"]))
    msgs = data.draw(messages(kind))
    assert parsed(msgs, kind, FAST[kind]) == parsed(msgs, kind, None)


RECORD = {"predictionId": "p-1", "tenantId": "acme", "modelId": "churn", "modelVersion": "3",
          "timestamp": "2026-11-28T10:00:00.123Z", "prediction": 0.25, "segment": "emea",
          "features": {"amount": 120.5, "count": 3, "region": "emea", "gone": None}}  # CAP of them


@given(prediction=st.floats(-1e300, 1e300) | st.integers(-(2**62), 2**62),
       timestamp=st.integers(0, 253402300799999), segment=st.none() | st.text(max_size=20),
       features=st.dictionaries(st.text(min_size=1, max_size=20),
                                st.none() | st.booleans() | st.integers(-(2**62), 2**62) | st.floats(allow_nan=False, allow_infinity=False)
                                | st.text(max_size=50), max_size=CAP))
def test_valid_records_take_the_fast_path(prediction: float, timestamp: int, segment: str | None,
                                          features: dict[str, Any]) -> None:
    doc = dict(RECORD, prediction=prediction, timestamp=timestamp, segment=segment, features=features)
    raw = orjson.dumps(doc)
    decoded = FAST["features"].decode(raw)
    assert decoded is not None and repr(decoded.records) == repr([InferenceRecord.from_dict(orjson.loads(raw))])
    envelope = FAST["features"].decode(orjson.dumps({"records": [doc, RECORD]}))
    assert envelope is not None and len(envelope.records) == 2 and envelope.raws is not None
    outcome = {"predictionId": "p-1", "tenantId": "acme", "modelId": "churn", "outcome": 1, "timestamp": timestamp}
    assert FAST["outcomes"].decode(orjson.dumps(outcome)) is not None


def test_one_bad_record_sends_its_envelope_the_full_way_and_only_it_is_rejected() -> None:
    bad = dict(RECORD, prediction="high")
    msgs = [Msg("t", 0, 7, b"k", orjson.dumps({"records": [RECORD, bad, RECORD]}))]
    assert FAST["features"].decode(msgs[0].value) is None
    p = parse_messages(msgs, "features", VALIDATORS, MAX_BYTES, InferenceRecord.from_dict, FAST["features"])
    assert [(o, i) for o, i, _ in p.records] == [(7, 0), (7, 2)]
    [letter] = p.letters
    assert (letter.reason, letter.index, orjson.loads(letter.value)) == ("schema", 1, bad)


class Forwarded(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class Event(NamedTuple):
    message: Forwarded


MONITOR = SimpleNamespace(settings=SimpleNamespace(max_message_bytes=MAX_BYTES), validators=VALIDATORS)


def forwarded(msgs: list[Forwarded], kind: str, fast: FastDecoder | None) -> tuple[Any, ...]:
    batch = parse_forwarded([Event(m) for m in msgs], kind, "src", MONITOR, MAKE[kind], fast)  # type: ignore[arg-type]
    letters = [batch.dead_letter(p, o, i, "internal_error", "x") for p, o, i in sorted(batch.originals)]
    return repr(batch.by_source), batch.letters, letters


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_forwarded_messages_parse_exactly_as_the_full_way(data: st.DataObject) -> None:
    """The repartition topics' messages (a record, or an envelope of some of a message's records
    with their indexes, as `streams/repartition.py` forwards them), and what the fold would
    dead-letter of them (each record's own bytes), are the same on both ways."""
    kind = data.draw(st.sampled_from(["features", "outcomes"]))
    msgs = []
    for offset, msg in enumerate(data.draw(messages(kind))):
        enveloped = data.draw(st.booleans())
        n = data.draw(st.integers(0, 3))
        indexes = tuple(sorted(data.draw(st.sets(st.integers(0, 9), min_size=n, max_size=n))))
        value = msg.value
        if enveloped and data.draw(st.booleans()):  # the shape the service writes
            value = json.dumps({"records": [data.draw(documents(kind)) for _ in indexes]}).encode()
        origin = Origin("src", data.draw(st.integers(0, 2)), offset, indexes if enveloped else None)
        msgs.append(Forwarded("src.repartition", 0, offset, b"k", value, origin.headers()))
    assert forwarded(msgs, kind, FAST[kind]) == forwarded(msgs, kind, None)
