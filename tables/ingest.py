"""The ingest fold: one batch of one source partition in, the table values to write out.

Pure and synchronous — `(state, events) -> (state, outputs)` — so it runs the same under the
Faust agents, in the offline replay of tests, and with no broker at all. State is read through
two getters; the result names every key to write (one write per touched key per batch).

Exactly-once counting on an at-least-once stream: each partial value stores the highest source
offset it has applied per input topic; an event at or below it has been counted already. The
join buffer remembers which source position supplied each side of a pair, so a redelivered
event (same position) is replayed while a genuine duplicate (same predictionId, another
message) is dropped."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.error_sums import PerformanceSums
from model_monitoring.tables.histogram import FeatureHistogram, count_groups
from model_monitoring.tables.join_buffer import JoinEntry, Outcome, Prediction, Source
from model_monitoring.tables.keys import JoinKey, MetaKey, PartialKey
from model_monitoring.tables.partial import FEATURES, NO_SEGMENT, OUTCOMES, PartialState

BaselineLookup = Callable[[str, str, str], Baseline | None]
PartialGetter = Callable[[bytes], PartialState | None]
JoinGetter = Callable[[bytes], JoinEntry | None]


def join_key(partition: int, prediction_id: str) -> bytes:
    return JoinKey(partition, prediction_id).encode()


def meta_key(partition: int) -> bytes:
    """Per-partition bookkeeping in the partials table: the event-time high-water marks."""
    return MetaKey(partition).encode()


@dataclass(frozen=True)
class Rejection:
    offset: int
    index: int
    reason: str
    detail: str


@dataclass
class FoldResult:
    partials: dict[bytes, PartialState] = field(default_factory=dict)
    joins: dict[bytes, JoinEntry] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    label_lags_ms: list[int] = field(default_factory=list)
    max_event_ms: int = -1


@dataclass
class _PendingPartial:
    before: PartialState
    features: list[Mapping[str, object]] = field(default_factory=list)
    predictions: list[float] = field(default_factory=list)
    outcomes: list[float] = field(default_factory=list)
    max_offset: dict[str, int] = field(default_factory=dict)


def _admit(out: FoldResult, offset: int, index: int, timestamp_ms: int, horizon_ms: int,
           reason: str) -> bool:
    """A record older than (the partition's event-time mark − horizon) is too late to count;
    any other moves the mark."""
    if out.max_event_ms >= 0 and timestamp_ms < out.max_event_ms - horizon_ms:
        out.rejected.append(Rejection(offset, index, "too_late", reason))
        return False
    out.max_event_ms = max(out.max_event_ms, timestamp_ms)
    return True


def _repeated(out: FoldResult, seen: set[Source], source: Source) -> bool:
    """The same event twice in one batch: a forwarded record sent again after a crash can reach
    its destination twice between two commits there (streams/repartition.py). The watermarks
    only see earlier batches, so the batch remembers its own."""
    if source in seen:
        out.counts["redelivered_skipped"] += 1
        return True
    seen.add(source)
    return False


class IngestFold:
    """Folds batches of one partition into partial and join-buffer values."""

    def __init__(self, partition: int, *, bucket_ms: int, retention_ms: int,
                 baseline_for: BaselineLookup) -> None:
        self.partition = partition
        self.bucket_ms = bucket_ms
        self.retention_ms = retention_ms
        self.baseline_for = baseline_for

    # ---------------------------------------------------------------- predictions
    def fold_predictions(self, records: Iterable[tuple[int, int, InferenceRecord]],
                         get_partial: PartialGetter, get_join: JoinGetter,
                         high_water_ms: int, slot: str = FEATURES) -> FoldResult:
        """Records in source order: (offset, index in envelope, record); `slot` names the log the
        offsets are of (the features topic's own partition, or a forwarded source partition)."""
        out = FoldResult(max_event_ms=high_water_ms)
        pending: dict[PartialKey, _PendingPartial] = {}
        seen: set[Source] = set()
        for offset, index, rec in records:
            source: Source = (slot, offset, index)
            if _repeated(out, seen, source):
                continue
            if not _admit(out, offset, index, rec.timestamp_ms, self.retention_ms, "prediction older than the retention"):
                continue
            jkey, entry = self._entry(out, get_join, rec.prediction_id)
            if entry.prediction is not None and entry.prediction.source != source:
                out.counts["duplicate_predictions"] += 1
                continue
            pred = Prediction(rec.tenant_id, rec.model_id, rec.model_version,
                              rec.segment or NO_SEGMENT, rec.timestamp_ms, float(rec.prediction),
                              source)
            entry = entry.with_prediction(pred)
            pkey = self._key_for(pred)
            pending_partial = self._pending(pending, pkey, get_partial)
            if pending_partial.before.applied(slot, offset):
                out.counts["redelivered_skipped"] += 1
            else:
                pending_partial.features.append(rec.features)
                pending_partial.max_offset[slot] = max(offset, pending_partial.max_offset.get(slot, -1))
                out.counts["records"] += 1
            outcome = entry.outcome
            if outcome is not None and entry.matched_by in (None, source):
                entry = entry.matched(source)
                self._contribute(pending_partial, slot, offset, pred, outcome, out)
            out.joins[jkey] = entry
        self._finish(pending, out)
        return out

    # ---------------------------------------------------------------- outcomes
    def fold_outcomes(self, records: Iterable[tuple[int, int, OutcomeRecord]],
                      get_partial: PartialGetter, get_join: JoinGetter,
                      high_water_ms: int, join_ttl_ms: int, slot: str = OUTCOMES) -> FoldResult:
        out = FoldResult(max_event_ms=high_water_ms)
        pending: dict[PartialKey, _PendingPartial] = {}
        seen: set[Source] = set()
        for offset, index, rec in records:
            source: Source = (slot, offset, index)
            if _repeated(out, seen, source):
                continue
            if not _admit(out, offset, index, rec.timestamp_ms, join_ttl_ms, "outcome older than the join TTL"):
                continue
            jkey, entry = self._entry(out, get_join, rec.prediction_id)
            if entry.outcome is not None and entry.outcome.source != source:
                out.counts["duplicate_outcomes"] += 1
                continue
            pred = entry.prediction
            if pred is not None and (pred.tenant_id, pred.model_id) != (rec.tenant_id, rec.model_id):
                out.rejected.append(Rejection(offset, index, "join_mismatch",
                                              "outcome names another tenant or model than its prediction"))
                continue
            outcome = Outcome(rec.tenant_id, rec.model_id, float(rec.outcome), rec.timestamp_ms, source)
            entry = entry.with_outcome(outcome)
            if pred is None:
                out.counts["early_outcomes"] += 1
            elif entry.matched_by in (None, source):
                entry = entry.matched(source)
                pending_partial = self._pending(pending, self._key_for(pred), get_partial)
                self._contribute(pending_partial, slot, offset, pred, outcome, out)
            out.joins[jkey] = entry
        self._finish(pending, out)
        return out

    # ---------------------------------------------------------------- helpers
    def _entry(self, out: FoldResult, get_join: JoinGetter, prediction_id: str) -> tuple[bytes, JoinEntry]:
        """The join entry of a prediction id: as this fold left it, else as stored, else new."""
        jkey = join_key(self.partition, prediction_id)
        return jkey, out.joins.get(jkey) or get_join(jkey) or JoinEntry()

    def _key_for(self, pred: Prediction) -> PartialKey:
        return PartialKey(self.partition, pred.tenant_id, pred.model_id, pred.model_version,
                          pred.segment, pred.timestamp_ms // self.bucket_ms)

    @staticmethod
    def _pending(pending: dict[PartialKey, _PendingPartial], key: PartialKey,
                 get_partial: PartialGetter) -> _PendingPartial:
        slot = pending.get(key)
        if slot is None:
            slot = pending[key] = _PendingPartial(get_partial(key.encode()) or PartialState())
        return slot

    @staticmethod
    def _contribute(slot: _PendingPartial, topic_slot: str, offset: int, pred: Prediction,
                    outcome: Outcome, out: FoldResult) -> None:
        if slot.before.applied(topic_slot, offset):
            return
        slot.predictions.append(pred.prediction)
        slot.outcomes.append(outcome.outcome)
        slot.max_offset[topic_slot] = max(offset, slot.max_offset.get(topic_slot, -1))
        out.counts["matched"] += 1
        out.label_lags_ms.append(outcome.timestamp_ms - pred.timestamp_ms)

    def _finish(self, pending: Mapping[PartialKey, _PendingPartial], out: FoldResult) -> None:
        histograms = self._histograms(pending)
        for key, slot in pending.items():
            if not slot.max_offset:
                continue  # everything in this batch for the key was counted before
            state = slot.before
            histogram = histograms.get(key)
            if histogram is not None and state.histogram.fingerprint not in ("", histogram.fingerprint):
                # the version's baseline was replaced: counts under the old bins are void
                out.counts["baseline_changed"] += 1
                state = PartialState(FeatureHistogram.empty(histogram.fingerprint),
                                     state.performance, state.watermarks, state.duplicates)
            performance = None
            if slot.predictions:
                performance = PerformanceSums.empty().update_many(
                    np.asarray(slot.predictions, dtype=np.float64),
                    np.asarray(slot.outcomes, dtype=np.float64))
            state = state.add(histogram, performance)
            for topic_slot, offset in slot.max_offset.items():
                state = state.with_watermark(topic_slot, offset)
            out.partials[key.encode()] = state

    def _histograms(self, pending: Mapping[PartialKey, _PendingPartial]) -> dict[PartialKey, FeatureHistogram]:
        """The batch's new counts per key: all keys of one baseline binned in one pass."""
        by_baseline: dict[int, tuple[Baseline, list[PartialKey]]] = {}
        out: dict[PartialKey, FeatureHistogram] = {}
        for key, slot in pending.items():
            if not slot.features:
                continue
            baseline = self.baseline_for(key.tenant_id, key.model_id, key.model_version)
            if baseline is None:
                out[key] = names_only(slot.features)
            else:
                by_baseline.setdefault(id(baseline), (baseline, []))[1].append(key)
        for baseline, keys in by_baseline.values():
            features: list[Mapping[str, object]] = []
            groups: list[int] = []
            for g, key in enumerate(keys):
                features += pending[key].features
                groups += [g] * len(pending[key].features)
            for key, histogram in zip(keys, count_groups(baseline, features, groups, len(keys)), strict=False):
                out[key] = histogram
        return out


def names_only(features: Sequence[Mapping[str, object]]) -> FeatureHistogram:
    """Events of a version without a baseline: no bins to count in, but the sample size and the
    feature names (reported as `no_baseline`) are kept."""
    names = sorted({name for f in features for name in f})
    return FeatureHistogram(counts={n: () for n in names}, type_mismatch={}, n=len(features),
                            fingerprint="")
