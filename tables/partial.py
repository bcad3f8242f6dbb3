"""The value of the `partials` table: what one source partition has counted for one
(tenant, model, version, segment, day) — feature bin counts, error sums, and the highest
source offset applied per input topic (the watermark that makes redelivery harmless)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated

import msgspec
import orjson

from model_monitoring.tables.calibration import N_BINS, ReliabilityBins
from model_monitoring.tables.error_sums import ErrorSums, PerformanceSums, units_from_text
from model_monitoring.tables.histogram import FeatureHistogram
from model_monitoring.tables.label_lag import LagHistogram

FEATURES = "f"  # watermark slot of the inference-features topic
OUTCOMES = "o"  # watermark slot of the outcomes topic
NO_SEGMENT = ""  # the segment field of events that carry none


def forwarded_slot(topic_slot: str, source_partition: int) -> str:
    """Watermark slot of the records forwarded from one source partition (`tables/forwarding.py`):
    they carry that partition's offsets, which increase along its log like a direct slot's."""
    return f"{topic_slot}@{source_partition}"


def pair_slot(features_slot: str) -> str:
    """Watermark slot of the errors of pairs a features log completed (a prediction folded after
    its outcome): an outcomes-topic slot ("o@…", tables/health_buckets.py `topic_slot`), so the
    detectors merge those errors with the outcomes', keyed by the features log whose offsets it
    carries."""
    return f"{OUTCOMES}@{features_slot}"


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
    """Immutable; every change returns a new value that is then reassigned to the table.

    In the table, a partial of a prediction day (`PartialKey`) holds the day's feature counts,
    its prediction scores (count, Σp, Σp², and the counts in the baseline's prediction bins),
    and the error sums, reliability bins and label lags of its predictions' outcomes so far;
    a partial of an arrival day (`ArrivalKey`) holds the error sums, reliability bins and lags
    of the pairs completed that day, whenever their predictions were made. Merged over a run's
    window (tables/run_evaluation.py), the arrival days' sums go to the `arrived_*` fields and
    the last weeks' prediction counts and lags to `cohorts`."""

    histogram: FeatureHistogram = field(default_factory=FeatureHistogram.empty)
    performance: PerformanceSums = field(default_factory=PerformanceSums.empty)
    watermarks: Mapping[str, int] = field(default_factory=dict)
    duplicates: int = 0
    scores: ErrorSums = field(default_factory=ErrorSums)
    score_counts: tuple[int, ...] = ()
    calibration: ReliabilityBins = field(default_factory=ReliabilityBins)
    lags: LagHistogram = field(default_factory=LagHistogram)
    arrived_performance: PerformanceSums = field(default_factory=PerformanceSums.empty)
    arrived_calibration: ReliabilityBins = field(default_factory=ReliabilityBins)
    arrived_lags: LagHistogram = field(default_factory=LagHistogram)
    cohorts: Mapping[int, Cohort] = field(default_factory=dict)
    expired_outcomes: int = 0

    def applied(self, topic_slot: str, offset: int) -> bool:
        """Has the event at this source offset already been folded into this value?"""
        return offset <= self.watermarks.get(topic_slot, -1)

    def with_watermark(self, topic_slot: str, offset: int) -> PartialState:
        marks = dict(self.watermarks)
        marks[topic_slot] = max(offset, marks.get(topic_slot, -1))
        return replace(self, watermarks=marks)

    def add(self, histogram: FeatureHistogram | None = None,
            performance: PerformanceSums | None = None) -> PartialState:
        return replace(
            self,
            histogram=self.histogram.merge(histogram) if histogram is not None else self.histogram,
            performance=self.performance.merge(performance) if performance is not None else self.performance)

    def trimmed(self) -> PartialState:
        """Past the retention: the feature and score counts go, the sums that outcomes still
        add to (until the join TTL) and the watermarks that guard them stay."""
        return replace(self, histogram=FeatureHistogram.empty(self.histogram.fingerprint), score_counts=())

    def as_arrived(self) -> PartialState:
        """An arrival day's partial as its share of a run's merged state."""
        return PartialState(arrived_performance=self.performance, arrived_calibration=self.calibration,
                            arrived_lags=self.lags, expired_outcomes=self.expired_outcomes)

    def merge(self, other: PartialState) -> PartialState:
        """Sum of two partials (for the weekly run; watermarks are per key, so dropped)."""
        histogram = merge_histograms(self.histogram, other.histogram)
        score_counts = _merge_counts(self, other, histogram)
        cohorts = dict(self.cohorts)
        for week, cohort in other.cohorts.items():
            cohorts[week] = cohorts[week].merge(cohort) if week in cohorts else cohort
        return PartialState(
            histogram, self.performance.merge(other.performance), {},
            self.duplicates + other.duplicates, self.scores.merge(other.scores), score_counts,
            self.calibration.merge(other.calibration), self.lags.merge(other.lags),
            self.arrived_performance.merge(other.arrived_performance),
            self.arrived_calibration.merge(other.arrived_calibration),
            self.arrived_lags.merge(other.arrived_lags), cohorts,
            self.expired_outcomes + other.expired_outcomes)

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {"h": self.histogram.to_json(), "p": self.performance.to_json(),
                                  "w": dict(self.watermarks), "d": self.duplicates}
        # the fields added with the outcome clock are written only when they hold something,
        # so older readers and older values stay as they were
        if self.scores.n:
            doc["s"] = self.scores.to_json()
        if self.score_counts:
            doc["sc"] = list(self.score_counts)
        if self.calibration.sums:
            doc["cb"] = self.calibration.to_json()
        if self.lags.counts:
            doc["lg"] = self.lags.to_json()
        if self.arrived_performance.n:
            doc["ap"] = self.arrived_performance.to_json()
        if self.arrived_calibration.sums:
            doc["acb"] = self.arrived_calibration.to_json()
        if self.arrived_lags.counts:
            doc["alg"] = self.arrived_lags.to_json()
        if self.cohorts:
            doc["co"] = {str(k): c.to_json() for k, c in sorted(self.cohorts.items())}
        if self.expired_outcomes:
            doc["xo"] = self.expired_outcomes
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> PartialState:
        marks, duplicates = doc.get("w") or {}, doc.get("d") or 0
        if not isinstance(marks, Mapping) or not isinstance(duplicates, int):
            raise ValueError("a partial's watermarks must be an object and its duplicates a count")
        cohorts = doc.get("co") or {}
        if not isinstance(cohorts, Mapping):
            raise ValueError("a partial's cohorts must be an object")
        return cls(FeatureHistogram.from_json(doc["h"]), PerformanceSums.from_json(doc["p"]),
                   {str(k): int(v) for k, v in marks.items()}, duplicates,
                   ErrorSums.from_json(doc["s"]) if "s" in doc else ErrorSums(),
                   tuple(int(c) for c in doc.get("sc") or ()),  # type: ignore[attr-defined]
                   ReliabilityBins.from_json(doc["cb"]) if "cb" in doc else ReliabilityBins(),
                   LagHistogram.from_json(doc.get("lg") or {}),
                   PerformanceSums.from_json(doc["ap"]) if "ap" in doc else PerformanceSums.empty(),
                   ReliabilityBins.from_json(doc["acb"]) if "acb" in doc else ReliabilityBins(),
                   LagHistogram.from_json(doc.get("alg") or {}),
                   {int(k): Cohort.from_json(v) for k, v in cohorts.items()},
                   int(doc.get("xo") or 0))  # type: ignore[call-overload]

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_json())

    @classmethod
    def from_bytes(cls, raw: bytes) -> PartialState:
        """The typed decoder when the document is in the form `to_bytes` writes (decoded and
        checked in C); anything else the general path reads or refuses, with its own error."""
        fast = decode_partial(raw)
        return fast if fast is not None else cls.from_json(orjson.loads(raw))


@dataclass(frozen=True)
class Cohort:
    """One week of predictions as label health sees it: how many, and the lags of those labelled."""

    predictions: int = 0
    lags: LagHistogram = field(default_factory=LagHistogram)

    def merge(self, other: Cohort) -> Cohort:
        return Cohort(self.predictions + other.predictions, self.lags.merge(other.lags))

    def to_json(self) -> list[object]:
        return [self.predictions, self.lags.to_json()]

    @classmethod
    def from_json(cls, doc: object) -> Cohort:
        if not (isinstance(doc, list) and len(doc) == 2 and isinstance(doc[0], int)):
            raise ValueError(f"a cohort must be [predictions, lags], got {doc!r}")
        return cls(doc[0], LagHistogram.from_json(doc[1]))


def _merge_counts(a: PartialState, b: PartialState, merged: FeatureHistogram) -> tuple[int, ...]:
    """The prediction-score counts go with the feature counts they were made with."""
    if a.histogram.fingerprint == b.histogram.fingerprint:
        if not a.score_counts or not b.score_counts:
            return a.score_counts or b.score_counts
        return tuple(x + y for x, y in zip(a.score_counts, b.score_counts, strict=True))
    return a.score_counts if merged is a.histogram else b.score_counts


# The typed form of a stored partial (`PartialState.to_json`), decoded and checked by msgspec in
# C: a weekly run reads tens of thousands of partials, and orjson + `from_json` cost ~60–100 µs
# each, the typed decoder ~30 (decoding ~15, building the values the rest). It accepts a subset
# of what `from_json` accepts and gives the same value (tests/unit/test_partial_decoder.py); a
# document outside it (an optional field null, a count written as a float, ...) goes the
# general way, which reads it or raises its own error. Optional fields are UNSET when absent, so
# an explicit null is not mistaken for absence. Integers are bounded to int64: orjson reads
# integers beyond 64 bits as floats, which the general way refuses or rounds, and msgspec's
# bounds stop at int64 (the few between go the general way, which reads them as orjson does).
_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Sums = tuple[_Count, str, str]  # ErrorSums: [n, Σe, Σe²], the sums as exact text
_Lags = dict[_Int, _Int]


class _HistogramDoc(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    fingerprint: str
    n: _Count
    counts: dict[str, tuple[_Count, ...]]
    typeMismatch: dict[str, _Count]  # noqa: N815 — the stored field's name


class _PerformanceDoc(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    squared: _Sums
    absolute: _Sums


class _BinsDoc(msgspec.Struct, gc=False):
    b: dict[_Int, tuple[_Int, str, str, str, str]]
    k: _Int = N_BINS


class _PartialDoc(msgspec.Struct, gc=False):
    h: _HistogramDoc
    p: _PerformanceDoc
    w: dict[str, _Int] | msgspec.UnsetType = msgspec.UNSET
    d: _Int | msgspec.UnsetType = msgspec.UNSET
    s: _Sums | msgspec.UnsetType = msgspec.UNSET
    sc: tuple[_Int, ...] | msgspec.UnsetType = msgspec.UNSET
    cb: _BinsDoc | msgspec.UnsetType = msgspec.UNSET
    lg: _Lags | msgspec.UnsetType = msgspec.UNSET
    ap: _PerformanceDoc | msgspec.UnsetType = msgspec.UNSET
    acb: _BinsDoc | msgspec.UnsetType = msgspec.UNSET
    alg: _Lags | msgspec.UnsetType = msgspec.UNSET
    co: dict[_Int, tuple[_Int, _Lags]] | msgspec.UnsetType = msgspec.UNSET
    xo: _Int | msgspec.UnsetType = msgspec.UNSET


_PARTIAL_DECODER = msgspec.json.Decoder(_PartialDoc)
_PART_ROWS_DECODER = msgspec.json.Decoder(list[tuple[str, str, _PartialDoc]])
_DECLINED = (msgspec.MsgspecError, ValueError)


def decode_partial(raw: bytes | bytearray | memoryview) -> PartialState | None:
    """A stored partial by the typed decoder, or None when it is not in the written form."""
    try:
        return _state_of(_PARTIAL_DECODER.decode(raw))
    except _DECLINED:
        return None


def decode_part_rows(raw: bytes | bytearray | memoryview) -> list[tuple[str, str, PartialState]] | None:
    """`[[version, segment, partial], ...]` (tables/evaluation_state.py `store_part`) by the
    typed decoder, or None when it is not in the written form."""
    try:
        return [(v, s, _state_of(doc)) for v, s, doc in _PART_ROWS_DECODER.decode(raw)]
    except _DECLINED:
        return None


def _sums(doc: tuple[int, str, str]) -> ErrorSums:
    return ErrorSums.from_units(doc[0], units_from_text(doc[1]), units_from_text(doc[2]))


_NO_SUMS = ErrorSums()
_NO_PERFORMANCE = PerformanceSums.empty()  # values are immutable: one empty value serves all


def _performance(doc: _PerformanceDoc | msgspec.UnsetType) -> PerformanceSums:
    if doc is msgspec.UNSET:
        return _NO_PERFORMANCE
    return PerformanceSums(_sums(doc.squared), _sums(doc.absolute))


def _bins(doc: _BinsDoc | msgspec.UnsetType) -> ReliabilityBins:
    if doc is msgspec.UNSET:
        return ReliabilityBins()
    return ReliabilityBins({k: (v[0], *map(units_from_text, v[1:])) for k, v in doc.b.items()},  # type: ignore[misc]
                           doc.k)


def _lags(doc: _Lags | msgspec.UnsetType) -> LagHistogram:
    return LagHistogram(doc) if doc is not msgspec.UNSET else LagHistogram({})


def _state_of(doc: _PartialDoc) -> PartialState:
    h = doc.h
    return PartialState(
        FeatureHistogram(h.counts, h.typeMismatch, h.n, h.fingerprint), _performance(doc.p),
        doc.w if doc.w is not msgspec.UNSET else {}, doc.d if doc.d is not msgspec.UNSET else 0,
        _sums(doc.s) if doc.s is not msgspec.UNSET else _NO_SUMS,
        doc.sc if doc.sc is not msgspec.UNSET else (), _bins(doc.cb), _lags(doc.lg),
        _performance(doc.ap), _bins(doc.acb), _lags(doc.alg),
        {} if doc.co is msgspec.UNSET else {k: Cohort(c[0], LagHistogram(c[1])) for k, c in doc.co.items()},
        doc.xo if doc.xo is not msgspec.UNSET else 0)
