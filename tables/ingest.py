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
from dataclasses import dataclass, field, replace

import numpy as np

from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.error_sums import PerformanceSums
from model_monitoring.tables.expiry import error_retention_ms, expirable
from model_monitoring.tables.health_buckets import BucketBook, BucketTracker, ClosedBuckets, count_health, error_of
from model_monitoring.tables.histogram import FeatureHistogram, count_groups
from model_monitoring.tables.join_buffer import JoinEntry, Outcome, Prediction, Source
from model_monitoring.tables.keys import ArrivalKey, JoinKey, MetaKey, PartialKey
from model_monitoring.tables.partial import FEATURES, NO_SEGMENT, OUTCOMES, PartialState, pair_slot

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
    bucket_books: dict[str, BucketBook] = field(default_factory=dict)  # tenant:model -> open minutes
    closed_buckets: list[ClosedBuckets] = field(default_factory=list)  # to the detectors


@dataclass
class _PendingPartial:
    before: PartialState
    features: list[Mapping[str, object]] = field(default_factory=list)
    health_ids: list[int] = field(default_factory=list)  # per feature record: its detector bucket or -1
    health_only: list[tuple[Mapping[str, object], int]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # the predictions of `features`' records
    predictions: list[float] = field(default_factory=list)  # pairs: prediction, outcome, lag
    outcomes: list[float] = field(default_factory=list)
    lags_ms: list[int] = field(default_factory=list)
    unmatched: int = 0  # outcomes whose prediction had expired (arrival days only)
    max_offset: dict[str, int] = field(default_factory=dict)


SlotKey = PartialKey | ArrivalKey


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
                 baseline_for: BaselineLookup, join_ttl_ms: int | None = None,
                 buckets: BucketTracker | None = None) -> None:
        self.partition = partition
        self.bucket_ms = bucket_ms
        self.retention_ms = retention_ms
        self.baseline_for = baseline_for
        # error sums live as long as outcomes can be joined (tables/expiry.py)
        self.error_retention_ms = error_retention_ms(retention_ms, join_ttl_ms or 0)
        self.join_ttl_ms = join_ttl_ms  # None: pairs match however far apart (no TTL)
        self.partition_high_water_ms = -1  # the partition's mark over both inputs (set per fold)
        self.buckets = buckets  # the continuous detectors' minute buckets, when detection is on

    # ---------------------------------------------------------------- predictions
    def fold_predictions(self, records: Iterable[tuple[int, int, InferenceRecord]],
                         get_partial: PartialGetter, get_join: JoinGetter,
                         high_water_ms: int, partition_high_water_ms: int = -1, *,
                         slot: str = FEATURES) -> FoldResult:
        """Records in source order: (offset, index in envelope, record). `high_water_ms` is this
        input's event-time mark, `partition_high_water_ms` the partition's over both inputs (the
        one expiry reads); `slot` names the log the offsets are of (the features topic's own
        partition, or a forwarded source partition)."""
        out = FoldResult(max_event_ms=high_water_ms)
        self.partition_high_water_ms = partition_high_water_ms
        pending: dict[SlotKey, _PendingPartial] = {}
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
            hid = -1 if self.buckets is None else self.buckets.admit_prediction(
                f"{rec.tenant_id}:{rec.model_id}", rec.model_version, offset, rec.timestamp_ms,
                pred.prediction, slot=slot)
            if pending_partial.before.applied(slot, offset):
                out.counts["redelivered_skipped"] += 1
                if hid >= 0:  # the partial has it, the detectors' bucket not yet (a crash between)
                    pending_partial.health_only.append((rec.features, hid))
            else:
                pending_partial.features.append(rec.features)
                pending_partial.health_ids.append(hid)
                pending_partial.scores.append(pred.prediction)
                pending_partial.max_offset[slot] = max(offset, pending_partial.max_offset.get(slot, -1))
                out.counts["records"] += 1
            outcome = entry.outcome
            if outcome is None or entry.matched_by not in (None, source):
                pass  # nothing to pair, or the other side's event already judged the pair
            elif self._past_ttl(pred, outcome.timestamp_ms):
                # its outcome was folded first (the outcomes topic ahead of the features) and
                # came later than the TTL after it: unmatched, as if it had come second
                entry = entry.matched(source, late=True)
                self._unmatched_late(pending, get_partial, slot, offset, pred, outcome.timestamp_ms, out)
            else:
                entry = entry.matched(source)
                self._contribute(pending, get_partial, slot, offset, pred, outcome, out)
                # the pair's error goes to the detectors whichever side came second; here under
                # a slot of its own (`pair_slot`): the outcome's time must not move the features
                # log's event-time mark, and the prediction's offset guards a redelivery
                self._admit_error(pred, outcome, offset, pair_slot(slot))
            out.joins[jkey] = entry
        self._finish(pending, out)
        if self.buckets is not None:
            out.bucket_books, out.closed_buckets = self.buckets.finish()
        return out

    # ---------------------------------------------------------------- outcomes
    def fold_outcomes(self, records: Iterable[tuple[int, int, OutcomeRecord]],
                      get_partial: PartialGetter, get_join: JoinGetter,
                      high_water_ms: int, join_ttl_ms: int, partition_high_water_ms: int = -1, *,
                      slot: str = OUTCOMES) -> FoldResult:
        out = FoldResult(max_event_ms=high_water_ms)
        self.partition_high_water_ms = partition_high_water_ms
        pending: dict[SlotKey, _PendingPartial] = {}
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
            if pred is not None and entry.matched_by not in (None, source):
                pass  # the prediction's event already judged the pair: a redelivered outcome
            elif pred is not None and rec.timestamp_ms - pred.timestamp_ms > join_ttl_ms:
                # the outcome came later than the join TTL after its prediction (whether or not
                # the timer has deleted the entry yet): it matches nothing, and label health
                # counts it on its day. Judged on the two records' own times, as `check` and the
                # oracle judge it, not on the partition's event-time mark: that mark depends on
                # how far the features topic ran ahead of the outcomes, so a replay, or another
                # broker's interleaving, could decide otherwise (the sales test on Kafka counted
                # 697 of 698 outcomes). fold_predictions judges the other order the same way,
                # and `late` marks which event judged it, so a redelivery of the other side
                # neither counts it again nor pairs it.
                entry = entry.matched(source, late=True)
                self._unmatched_late(pending, get_partial, slot, offset, pred, rec.timestamp_ms, out)
            elif pred is None:
                out.counts["early_outcomes"] += 1
            else:
                entry = entry.matched(source)
                self._contribute(pending, get_partial, slot, offset, pred, outcome, out)
                self._admit_error(pred, outcome, offset, slot)
            out.joins[jkey] = entry
        self._finish(pending, out)
        if self.buckets is not None:
            out.bucket_books, out.closed_buckets = self.buckets.finish()
        return out

    # ---------------------------------------------------------------- helpers
    def _admit_error(self, pred: Prediction, outcome: Outcome, offset: int, slot: str) -> None:
        """A completed pair's error to the continuous detectors, in its outcome's minute."""
        if self.buckets is None:
            return
        baseline = self.baseline_for(pred.tenant_id, pred.model_id, pred.model_version)
        if baseline is not None:
            self.buckets.admit_error(f"{pred.tenant_id}:{pred.model_id}", pred.model_version, offset,
                                     outcome.timestamp_ms, error_of(baseline.task, pred.prediction, outcome.outcome),
                                     slot=slot)

    def _past_ttl(self, pred: Prediction, outcome_ms: int) -> bool:
        return self.join_ttl_ms is not None and outcome_ms - pred.timestamp_ms > self.join_ttl_ms

    def _unmatched_late(self, pending: dict[SlotKey, _PendingPartial], get_partial: PartialGetter,
                        topic_slot: str, offset: int, pred: Prediction, outcome_ms: int,
                        out: FoldResult) -> None:
        """An outcome later than the TTL after its prediction: counted once on the outcome's
        day (label health), guarded by the watermark of the event that found the pair."""
        out.counts["unmatched_late_outcomes"] += 1
        arrival = self._pending(pending, ArrivalKey(
            self.partition, pred.tenant_id, pred.model_id, pred.model_version, pred.segment,
            outcome_ms // self.bucket_ms), get_partial)
        if not arrival.before.applied(topic_slot, offset):
            arrival.unmatched += 1
            arrival.max_offset[topic_slot] = max(offset, arrival.max_offset.get(topic_slot, -1))

    def _entry(self, out: FoldResult, get_join: JoinGetter, prediction_id: str) -> tuple[bytes, JoinEntry]:
        """The join entry of a prediction id: as this fold left it, else as stored, else new."""
        jkey = join_key(self.partition, prediction_id)
        return jkey, out.joins.get(jkey) or get_join(jkey) or JoinEntry()

    def _key_for(self, pred: Prediction) -> PartialKey:
        return PartialKey(self.partition, pred.tenant_id, pred.model_id, pred.model_version,
                          pred.segment, pred.timestamp_ms // self.bucket_ms)

    @staticmethod
    def _pending(pending: dict[SlotKey, _PendingPartial], key: SlotKey,
                 get_partial: PartialGetter) -> _PendingPartial:
        slot = pending.get(key)
        if slot is None:
            slot = pending[key] = _PendingPartial(get_partial(key.encode()) or PartialState())
        return slot

    def _contribute(self, pending: dict[SlotKey, _PendingPartial], get_partial: PartialGetter,
                    topic_slot: str, offset: int, pred: Prediction, outcome: Outcome,
                    out: FoldResult) -> None:
        """A completed pair adds to its prediction day's partial (the prediction-window view)
        and to its arrival day's (the outcome-arrival view: the day the pair was completed, the
        later of its two times), each guarded by its own watermark. A key past the error
        retention is never written again: it may have been expired, and with it its watermark."""
        lag = outcome.timestamp_ms - pred.timestamp_ms
        arrival_day = max(pred.timestamp_ms, outcome.timestamp_ms) // self.bucket_ms
        keys: tuple[SlotKey, ...] = (self._key_for(pred), ArrivalKey(
            self.partition, pred.tenant_id, pred.model_id, pred.model_version, pred.segment, arrival_day))
        high_water = max(self.partition_high_water_ms, out.max_event_ms)
        counted = False
        for key in keys:
            if expirable(key.day, self.bucket_ms, high_water, self.error_retention_ms):
                out.counts["past_retention"] += 1
                continue
            slot = self._pending(pending, key, get_partial)
            if slot.before.applied(topic_slot, offset):
                continue
            slot.predictions.append(pred.prediction)
            slot.outcomes.append(outcome.outcome)
            slot.lags_ms.append(lag)
            slot.max_offset[topic_slot] = max(offset, slot.max_offset.get(topic_slot, -1))
            counted = True
        if counted:
            out.counts["matched"] += 1
            out.label_lags_ms.append(lag)

    def _finish(self, pending: Mapping[SlotKey, _PendingPartial], out: FoldResult) -> None:
        histograms = self._histograms(pending)
        for key, slot in pending.items():
            if not slot.max_offset:
                continue  # everything in this batch for the key was counted before
            state = slot.before
            histogram = histograms.get(key) if isinstance(key, PartialKey) else None
            if histogram is not None and state.histogram.fingerprint not in ("", histogram.fingerprint):
                # the version's baseline was replaced: counts under the old bins are void
                out.counts["baseline_changed"] += 1
                state = replace(state, histogram=FeatureHistogram.empty(histogram.fingerprint), score_counts=())
            performance = None
            if slot.predictions:
                p = np.asarray(slot.predictions, dtype=np.float64)
                y = np.asarray(slot.outcomes, dtype=np.float64)
                performance = PerformanceSums.empty().update_many(p, y)
                # reliability bins read probabilities: a regression score is clipped (never read)
                state = replace(state, calibration=state.calibration.update_many(np.clip(p, 0.0, 1.0), y),
                                lags=state.lags.update_many(slot.lags_ms))
            if slot.scores:
                state = self._with_scores(state, key, slot.scores, histogram)
            if slot.unmatched:
                state = replace(state, expired_outcomes=state.expired_outcomes + slot.unmatched)
            state = state.add(histogram, performance)
            for topic_slot, offset in slot.max_offset.items():
                state = state.with_watermark(topic_slot, offset)
            out.partials[key.encode()] = state

    def _with_scores(self, state: PartialState, key: SlotKey, scores: list[float],
                     histogram: FeatureHistogram | None) -> PartialState:
        """The prediction scores of new records: count, Σp, Σp² (clipped to [0, 1]: only a
        classifier's are read), and their counts in the baseline's prediction bins."""
        p = np.asarray(scores, dtype=np.float64)
        state = replace(state, scores=state.scores.update_many(np.clip(p, 0.0, 1.0)))
        baseline = self.baseline_for(key.tenant_id, key.model_id, key.model_version)
        if baseline is None or baseline.prediction is None or histogram is None or not histogram.fingerprint:
            return state
        counts, _ = baseline.prediction.bins.bin_values(list(p))
        before = state.score_counts or (0,) * len(counts)
        return replace(state, score_counts=tuple(int(a) + int(b) for a, b in zip(before, counts, strict=True)))

    def _histograms(self, pending: Mapping[SlotKey, _PendingPartial]) -> dict[SlotKey, FeatureHistogram]:
        """The batch's new counts per key: all keys of one baseline binned in one pass."""
        by_baseline: dict[int, tuple[Baseline, list[SlotKey]]] = {}
        out: dict[SlotKey, FeatureHistogram] = {}
        for key, slot in pending.items():
            if not slot.features and not slot.health_only:
                continue
            baseline = self.baseline_for(key.tenant_id, key.model_id, key.model_version)
            if baseline is None:
                if slot.features:
                    out[key] = names_only(slot.features)
            else:
                by_baseline.setdefault(id(baseline), (baseline, []))[1].append(key)
        for baseline, keys in by_baseline.values():
            features: list[Mapping[str, object]] = []
            groups: list[int] = []
            hids: list[int] = []
            for g, key in enumerate(keys):
                features += pending[key].features
                groups += [g] * len(pending[key].features)
                hids += pending[key].health_ids
            for key in keys:  # binned for the detectors only, in a group that is dropped
                features += [f for f, _ in pending[key].health_only]
                groups += [len(keys)] * len(pending[key].health_only)
                hids += [h for _, h in pending[key].health_only]
            codes: dict[str, tuple[np.ndarray, np.ndarray]] | None = {} if self.buckets is not None else None
            histograms = count_groups(baseline, features, groups, len(keys) + 1, codes)
            for key, histogram in zip(keys, histograms, strict=False):
                if pending[key].features:
                    out[key] = histogram
            if self.buckets is not None and codes is not None:
                self.buckets.add_counts(count_health(baseline, codes, np.asarray(hids, dtype=np.int64),
                                                     len(self.buckets.health_keys)))
        return out


def names_only(features: Sequence[Mapping[str, object]]) -> FeatureHistogram:
    """Events of a version without a baseline: no bins to count in, but the sample size and the
    feature names (reported as `no_baseline`) are kept."""
    names = sorted({name for f in features for name in f})
    return FeatureHistogram(counts={n: () for n in names}, type_mismatch={}, n=len(features),
                            fingerprint="")
