"""Regression (found by bench/reliability.py, bad input): a message that is not an envelope but
holds a `records` field — any outcome, or an inference record with a `predictionId` — was
dead-lettered as if it were envelope record 0: a `source.index` header of 0 and the value
re-serialised instead of the original bytes (CONTRACT.md: the DLQ carries the original key and
value bytes). Only records unwrapped from a features envelope carry an index."""

from __future__ import annotations

from types import SimpleNamespace

import orjson

from model_monitoring.agents.ingest import parse_batch
from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.schemas.validation import Validators

MONITOR = SimpleNamespace(settings=SimpleNamespace(max_message_bytes=1 << 20), validators=Validators())


def event(value: bytes, offset: int = 7) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(topic="t", partition=0, offset=offset, key=b"k",
                                                   value=value))


def test_an_outcome_with_records_is_dead_lettered_whole() -> None:
    raw = b'{"records": [{"predictionId": "p", "outcome": 1}],  "note": "not an envelope"}'
    records, letters, _ = parse_batch([event(raw)], "outcomes", MONITOR, OutcomeRecord.from_dict)
    assert not records
    [letter] = letters
    assert letter.index is None and letter.value == raw and letter.reason == "schema"
    assert "source.index" not in dict(letter.headers())


def test_a_bad_inference_record_with_a_records_field_is_dead_lettered_whole() -> None:
    raw = b'{"predictionId": "p-1", "records": [], "prediction": "NaN"}'
    records, letters, _ = parse_batch([event(raw)], "features", MONITOR, InferenceRecord.from_dict)
    assert not records
    [letter] = letters
    assert letter.index is None and letter.value == raw


def test_envelope_records_keep_their_index() -> None:
    good = {"predictionId": "p-1", "tenantId": "t", "modelId": "m", "modelVersion": "1",
            "timestamp": "2026-11-20T10:00:00Z", "prediction": 0.5, "features": {"a": 1}}
    raw = orjson.dumps({"records": [good, {"predictionId": 5}]})
    records, letters, _ = parse_batch([event(raw)], "features", MONITOR, InferenceRecord.from_dict)
    assert [(offset, index) for offset, index, _ in records] == [(7, 0)]
    [letter] = letters
    assert letter.index == 1 and orjson.loads(letter.value or b"") == {"predictionId": 5}
    single = orjson.dumps({"records": [{"predictionId": 6}]})
    _, [one], _ = parse_batch([event(single)], "features", MONITOR, InferenceRecord.from_dict)
    assert one.index == 0


def test_a_record_the_fold_rejects_is_dead_lettered_whole_unless_enveloped() -> None:
    """The same on the fold's path (too_late, join_mismatch): index 0 of a plain message."""
    from model_monitoring.agents.ingest import _record_bytes

    plain = b'{"predictionId": "p-1", "records": [1], "timestamp": "2000-01-01T00:00:00Z"}'
    assert _record_bytes(plain, 0) == (plain, None)
    envelope = b'{"records": [{"predictionId": "a"}, {"predictionId": "b"}]}'
    assert _record_bytes(envelope, 1) == (b'{"predictionId":"b"}', 1)
