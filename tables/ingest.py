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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.tables.baseline import BaselineLookup
from model_monitoring.tables.expiry import error_retention_ms, expirable
from model_monitoring.tables.health_buckets import BucketBook, BucketTracker, ClosedBuckets, error_of
from model_monitoring.tables.ingest_partials import PendingPartial, SlotKey, finish_partials
from model_monitoring.tables.join_buffer import JoinEntry, Outcome, Prediction, Source
from model_monitoring.tables.keys import ArrivalKey, MetaKey, PartialKey, join_key_bytes
from model_monitoring.tables.partial import FEATURES, NO_SEGMENT, OUTCOMES, PartialState, pair_slot

PartialGetter = Callable[[bytes], PartialState | None]
JoinGetter = Callable[[bytes], JoinEntry | None]


class _Timed(Protocol):
    @property
    def timestamp_ms(self) -> int: ...


R = TypeVar("R", bound=_Timed)


def join_key(partition: int, prediction_id: str) -> bytes:
    return join_key_bytes(partition, prediction_id)


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


def _admit(out: FoldResult, offset: int, index: int, timestamp_ms: int, horizon_ms: int,
           reason: str) -> bool:
    """A record older than (the partition's event-time mark − horizon) is too late to count;
    any other moves the mark."""
    if out.max_event_ms >= 0 and timestamp_ms < out.max_event_ms - horizon_ms:
        out.rejected.append(Rejection(offset, index, "too_late", reason))
        return False
    out.max_event_ms = max(out.max_event_ms, timestamp_ms)
    return True


def _admitted(out: FoldResult, records: Iterable[tuple[int, int, R]], slot: str, horizon_ms: int,
              reason: str) -> Iterator[tuple[int, int, R, Source]]:
    """The batch's records, each with its source position, but a repeat within the batch
    (`_repeated`) and one too late (`_admit`)."""
    seen: set[Source] = set()
    for offset, index, rec in records:
        source: Source = (slot, offset, index)
        if not _repeated(out, seen, source) and _admit(out, offset, index, rec.timestamp_ms, horizon_ms, reason):
            yield offset, index, rec, source


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
        pending: dict[SlotKey, PendingPartial] = {}
        # (tenant, model, version, segment, day) -> its pending partial: a tuple hashes ~10× faster
        # than building and hashing a PartialKey per record
        by_day: dict[tuple[str, str, str, str, int], PendingPartial] = {}
        for offset, _index, rec, source in _admitted(out, records, slot, self.retention_ms,
                                                     "prediction older than the retention"):
            jkey, entry = self._entry(out, get_join, rec.prediction_id)
            if entry.prediction is not None and entry.prediction.source != source:
                out.counts["duplicate_predictions"] += 1
                continue
            pred = Prediction(rec.tenant_id, rec.model_id, rec.model_version,
                              rec.segment or NO_SEGMENT, rec.timestamp_ms, float(rec.prediction),
                              source)
            entry = entry.with_prediction(pred)
            day_of = (pred.tenant_id, pred.model_id, pred.model_version, pred.segment,
                      pred.timestamp_ms // self.bucket_ms)
            pending_partial = by_day.get(day_of)
            if pending_partial is None:
                pending_partial = by_day[day_of] = self._pending(pending, self._key_for(pred), get_partial)
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
        out.partials.update(finish_partials(pending, self.baseline_for, self.buckets, out.counts))
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
        pending: dict[SlotKey, PendingPartial] = {}
        for offset, index, rec, source in _admitted(out, records, slot, join_ttl_ms,
                                                    "outcome older than the join TTL"):
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
        out.partials.update(finish_partials(pending, self.baseline_for, self.buckets, out.counts))
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

    def _unmatched_late(self, pending: dict[SlotKey, PendingPartial], get_partial: PartialGetter,
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
    def _pending(pending: dict[SlotKey, PendingPartial], key: SlotKey,
                 get_partial: PartialGetter) -> PendingPartial:
        slot = pending.get(key)
        if slot is None:
            slot = pending[key] = PendingPartial(get_partial(key.encode()) or PartialState())
        return slot

    def _contribute(self, pending: dict[SlotKey, PendingPartial], get_partial: PartialGetter,
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
