"""The value of the `partials` table: what one source partition has counted for one
(tenant, model, version, segment, day) — feature bin counts, error sums, and the highest
source offset applied per input topic (the watermark that makes redelivery harmless)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from model_monitoring.tables.error_sums import PerformanceSums
from model_monitoring.tables.histogram import FeatureHistogram

FEATURES = "f"  # watermark slot of the inference-features topic
OUTCOMES = "o"  # watermark slot of the outcomes topic
NO_SEGMENT = ""  # the segment field of events that carry none


def forwarded_slot(topic_slot: str, source_partition: int) -> str:
    """Watermark slot of the records forwarded from one source partition (`tables/forwarding.py`):
    they carry that partition's offsets, which increase along its log like a direct slot's."""
    return f"{topic_slot}@{source_partition}"


VersionSegment = tuple[str, str]  # (model version, segment or NO_SEGMENT): a part's key


def merge_histograms(a: FeatureHistogram, b: FeatureHistogram) -> FeatureHistogram:
    """Merge counts made with the same bins. Counts made before the version had a baseline
    (fingerprint "") hold feature names only and give way to binned counts; counts under two
    different baselines (one replaced the other inside the window) cannot be added, and the
    larger sample is kept — the evaluator then compares only counts made with the current bins."""
    if a.fingerprint == b.fingerprint:
        return a.merge(b)
    if not a.fingerprint:
        return b
    if not b.fingerprint:
        return a
    return a if a.n >= b.n else b


@dataclass(frozen=True)
class PartialState:
    """Immutable; every change returns a new value that is then reassigned to the table."""

    histogram: FeatureHistogram = field(default_factory=FeatureHistogram.empty)
    performance: PerformanceSums = field(default_factory=PerformanceSums.empty)
    watermarks: Mapping[str, int] = field(default_factory=dict)
    duplicates: int = 0

    def applied(self, topic_slot: str, offset: int) -> bool:
        """Has the event at this source offset already been folded into this value?"""
        return offset <= self.watermarks.get(topic_slot, -1)

    def with_watermark(self, topic_slot: str, offset: int) -> PartialState:
        marks = dict(self.watermarks)
        marks[topic_slot] = max(offset, marks.get(topic_slot, -1))
        return PartialState(self.histogram, self.performance, marks, self.duplicates)

    def add(self, histogram: FeatureHistogram | None = None,
            performance: PerformanceSums | None = None) -> PartialState:
        return PartialState(
            self.histogram.merge(histogram) if histogram is not None else self.histogram,
            self.performance.merge(performance) if performance is not None else self.performance,
            self.watermarks, self.duplicates)

    def merge(self, other: PartialState) -> PartialState:
        """Sum of two partials (for the weekly run; watermarks are per key, so dropped)."""
        return PartialState(merge_histograms(self.histogram, other.histogram),
                            self.performance.merge(other.performance), {},
                            self.duplicates + other.duplicates)

    def to_json(self) -> dict[str, object]:
        return {"h": self.histogram.to_json(), "p": self.performance.to_json(),
                "w": dict(self.watermarks), "d": self.duplicates}

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> PartialState:
        marks, duplicates = doc.get("w") or {}, doc.get("d") or 0
        if not isinstance(marks, Mapping) or not isinstance(duplicates, int):
            raise ValueError("a partial's watermarks must be an object and its duplicates a count")
        return cls(FeatureHistogram.from_json(doc["h"]), PerformanceSums.from_json(doc["p"]),
                   {str(k): int(v) for k, v in marks.items()}, duplicates)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_json())

    @classmethod
    def from_bytes(cls, raw: bytes) -> PartialState:
        return cls.from_json(orjson.loads(raw))
