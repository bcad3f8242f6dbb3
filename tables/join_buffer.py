"""A join entry (key `JoinKey`, b"{partition}|{predictionId}"): a prediction waiting for its
outcome, or an early outcome waiting for its prediction, and which source event matched them.
Stored in batches in the join log (tables/join_log.py); the previous release kept one per key in
the `join_buffer` table. Remembering the source position of each side is what lets a redelivered event be told
from a genuine duplicate (same predictionId, another message)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import orjson
from msgspec.structs import replace

Source = tuple[str, int, int]  # (topic slot, offset, index within an envelope)


# Frozen msgspec Structs rather than frozen dataclasses: a few are built and replaced per record
# on the hot path, each ~10× faster (no `object.__setattr__` per field).
class Prediction(msgspec.Struct, frozen=True, gc=False):
    tenant_id: str
    model_id: str
    model_version: str
    segment: str
    timestamp_ms: int
    prediction: float
    source: Source


class Outcome(msgspec.Struct, frozen=True, gc=False):
    tenant_id: str
    model_id: str
    outcome: float
    timestamp_ms: int
    source: Source


class JoinEntry(msgspec.Struct, frozen=True, gc=False):
    prediction: Prediction | None = None
    outcome: Outcome | None = None
    matched_by: Source | None = None  # the event whose arrival completed the pair
    # the pair was completed further apart than the join TTL: it matches nothing, and
    # `matched_by` is the event that found it so (label health counts it once, on its watermark)
    late: bool = False

    @property
    def last_seen_ms(self) -> int:
        """Event time the TTL counts from."""
        p, o = self.prediction, self.outcome
        if p is None:
            return 0 if o is None else o.timestamp_ms
        return p.timestamp_ms if o is None else max(p.timestamp_ms, o.timestamp_ms)

    def with_prediction(self, p: Prediction) -> JoinEntry:
        return replace(self, prediction=p)

    def with_outcome(self, o: Outcome) -> JoinEntry:
        return replace(self, outcome=o)

    def matched(self, by: Source, *, late: bool = False) -> JoinEntry:
        return replace(self, matched_by=by, late=late)

    def to_bytes(self) -> bytes:
        doc: dict[str, object] = {}
        if self.prediction is not None:
            p = self.prediction
            doc["p"] = [p.tenant_id, p.model_id, p.model_version, p.segment, p.timestamp_ms,
                        p.prediction, list(p.source)]
        if self.outcome is not None:
            o = self.outcome
            doc["o"] = [o.tenant_id, o.model_id, o.outcome, o.timestamp_ms, list(o.source)]
        if self.matched_by is not None:
            doc["m"] = list(self.matched_by)
        if self.late:
            doc["l"] = 1
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, raw: bytes) -> JoinEntry:
        doc: Mapping[str, list[Any]] = orjson.loads(raw)
        p = doc.get("p")
        o = doc.get("o")
        m = doc.get("m")
        return cls(
            Prediction(p[0], p[1], p[2], p[3], p[4], p[5], _source(p[6])) if p else None,
            Outcome(o[0], o[1], o[2], o[3], _source(o[4])) if o else None,
            _source(m) if m else None,
            bool(doc.get("l")),
        )


def _source(v: list[Any]) -> Source:
    return (str(v[0]), int(v[1]), int(v[2]))
