"""Event-time minute buckets for continuous detection, on the ingest side.

Each source partition keeps, per (tenant, model), the integer sums of the minutes still open
(`BucketBook`, table `detect_buckets`): per (version, minute) the events, each feature's missing,
type-mismatch and out-of-range counts and the prediction's exact sums (`HealthSums`), and per
(version, outcome minute) the exact error sums of the outcomes matched.

A minute closes when the model's event-time watermark on this partition (the latest event time
seen, per log: the input topic's own partition, or the records forwarded from one source
partition, which carry that partition's offsets) has passed its end by the allowed lateness. The decision is made record by
record in source order (`BucketTracker.admit`), so which records fall in which closed bucket
depends only on the partition's log, never on batch boundaries; a record for a minute already
closed is late: counted by the weekly sums, not by the detectors. Redelivery is absorbed by the
book's own applied-offset watermark. Closed minutes leave as one `ClosedBuckets` message per
(model, log) to the detectors (keyed by model)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import orjson

from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.error_sums import ErrorSums

MINUTE_MS = 60_000
Slot = str  # "f" (features), "o" (outcomes), or "f@3"/"o@3": forwarded from source partition 3
BucketId = tuple[str, int]  # (model version, minute since the epoch)


def topic_slot(slot: Slot) -> str:
    """The input topic of a slot: "f" or "o" (tables/partial.py: `forwarded_slot`)."""
    return slot.split("@", 1)[0]


@dataclass(frozen=True)
class HealthSums:
    """One (version, minute) of one model: events, per-feature (missing, mismatch, out of range)
    counts and the prediction's exact sums. Mergeable: associative and commutative."""

    n: int = 0
    features: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)
    prediction: ErrorSums = field(default_factory=ErrorSums)

    def merge(self, other: HealthSums) -> HealthSums:
        features = dict(self.features)
        for name, (a, b, c) in other.features.items():
            x, y, z = features.get(name, (0, 0, 0))
            features[name] = (x + a, y + b, z + c)
        return HealthSums(self.n + other.n, dict(sorted(features.items())),
                          self.prediction.merge(other.prediction))

    def to_json(self) -> list[object]:
        return [self.n, {k: list(v) for k, v in self.features.items()}, self.prediction.to_json()]

    @classmethod
    def from_json(cls, doc: object) -> HealthSums:
        if not (isinstance(doc, list) and len(doc) == 3 and isinstance(doc[1], dict)):
            raise ValueError(f"not HealthSums: {doc!r}")
        count, per_feature, prediction = doc
        return cls(int(count), {str(k): (int(v[0]), int(v[1]), int(v[2])) for k, v in per_feature.items()},
                   ErrorSums.from_json(prediction))


def _encode_buckets(buckets: Mapping[BucketId, HealthSums] | Mapping[BucketId, ErrorSums]) -> list[object]:
    return [[v, m, buckets[(v, m)].to_json()] for v, m in sorted(buckets)]


@dataclass(frozen=True)
class BucketBook:
    """Open minutes of one (partition, tenant:model), with the marks that make it exact."""

    health: Mapping[BucketId, HealthSums] = field(default_factory=dict)
    errors: Mapping[BucketId, ErrorSums] = field(default_factory=dict)
    event_ms: Mapping[Slot, int] = field(default_factory=dict)   # event-time watermark per topic
    offsets: Mapping[Slot, int] = field(default_factory=dict)    # highest source offset applied
    sent: Mapping[Slot, int] = field(default_factory=dict)       # minutes below this have left

    def to_bytes(self) -> bytes:
        return orjson.dumps({"h": _encode_buckets(self.health), "e": _encode_buckets(self.errors),
                             "t": dict(self.event_ms), "o": dict(self.offsets), "s": dict(self.sent)})

    @classmethod
    def from_bytes(cls, raw: bytes) -> BucketBook:
        doc = orjson.loads(raw)
        return cls({(str(v), int(m)): HealthSums.from_json(x) for v, m, x in doc["h"]},
                   {(str(v), int(m)): ErrorSums.from_json(x) for v, m, x in doc["e"]},
                   {str(k): int(v) for k, v in doc["t"].items()},
                   {str(k): int(v) for k, v in doc["o"].items()},
                   {str(k): int(v) for k, v in doc["s"].items()})


@dataclass(frozen=True)
class ClosedBuckets:
    """Minutes [.., closed_through) of one model on one source partition and input topic,
    closed: the detectors' input (topic keyed by tenant:model)."""

    partition: int
    model_key: str
    slot: Slot
    closed_through: int
    health: Mapping[BucketId, HealthSums] = field(default_factory=dict)
    errors: Mapping[BucketId, ErrorSums] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return orjson.dumps({"type": "closed_buckets", "p": self.partition, "k": self.model_key,
                             "s": self.slot, "c": self.closed_through,
                             "h": _encode_buckets(self.health), "e": _encode_buckets(self.errors)})

    @classmethod
    def from_bytes(cls, raw: bytes) -> ClosedBuckets:
        doc = orjson.loads(raw)
        if doc.get("type") != "closed_buckets":
            raise ValueError("not a closed_buckets message")
        return cls(int(doc["p"]), str(doc["k"]), str(doc["s"]), int(doc["c"]),
                   {(str(v), int(m)): HealthSums.from_json(x) for v, m, x in doc["h"]},
                   {(str(v), int(m)): ErrorSums.from_json(x) for v, m, x in doc["e"]})


BookGetter = Callable[[str], BucketBook | None]


@dataclass
class _Open:
    book: BucketBook
    event_ms: dict[Slot, int]
    offsets: dict[Slot, int]
    touched: bool = False


class BucketTracker:
    """One batch of one partition: admits records in source order, then yields the books to
    write and the minutes that closed. Pure; the state is read through `get_book`."""

    def __init__(self, partition: int, lateness_ms: int, get_book: BookGetter) -> None:
        self.partition = partition
        self.lateness_ms = lateness_ms
        self.get_book = get_book
        self.books: dict[str, _Open] = {}
        self.health_keys: list[tuple[str, str, int]] = []  # health id -> (model key, version, minute)
        self._health_index: dict[tuple[str, str, int], int] = {}
        self.predictions: list[float] = []
        self.prediction_ids: list[int] = []
        self.health_counts: dict[int, dict[str, tuple[int, int, int]]] = {}
        self.errors: dict[tuple[str, str, int], list[float]] = {}

    def _open(self, model_key: str) -> _Open:
        slot = self.books.get(model_key)
        if slot is None:
            book = self.get_book(model_key) or BucketBook()
            slot = self.books[model_key] = _Open(book, dict(book.event_ms), dict(book.offsets))
        return slot

    def _minute_if_open(self, state: _Open, slot: Slot, offset: int, timestamp_ms: int) -> int | None:
        if offset <= state.book.offsets.get(slot, -1):
            return None  # applied before this batch (redelivery)
        state.touched = True
        state.offsets[slot] = max(offset, state.offsets.get(slot, -1))
        mark = state.event_ms.get(slot, -1)
        closed = (mark - self.lateness_ms) // MINUTE_MS if mark >= 0 else None
        state.event_ms[slot] = max(mark, timestamp_ms)
        minute = timestamp_ms // MINUTE_MS
        if closed is not None and minute < closed:
            return None  # late: that minute has closed
        return minute

    def admit_prediction(self, model_key: str, version: str, offset: int, timestamp_ms: int,
                         prediction: float, *, slot: Slot = "f") -> int:
        """The record's health id (its (model, version, minute) bucket), or -1 when it is late
        or was applied before. `slot`: the log the offset is of, as the fold names it."""
        minute = self._minute_if_open(self._open(model_key), slot, offset, timestamp_ms)
        if minute is None:
            return -1
        key = (model_key, version, minute)
        hid = self._health_index.get(key)
        if hid is None:
            hid = self._health_index[key] = len(self.health_keys)
            self.health_keys.append(key)
        self.predictions.append(prediction)
        self.prediction_ids.append(hid)
        return hid

    def admit_error(self, model_key: str, version: str, offset: int, timestamp_ms: int,
                    error: float, *, slot: Slot = "o") -> None:
        """One matched outcome's error, in its outcome minute, unless late or applied before."""
        minute = self._minute_if_open(self._open(model_key), slot, offset, timestamp_ms)
        if minute is not None:
            self.errors.setdefault((model_key, version, minute), []).append(error)

    def add_counts(self, counts: Mapping[int, Mapping[str, tuple[int, int, int]]]) -> None:
        """Per health id, the features' (missing, mismatch, out of range) counts of the batch."""
        for hid, per_feature in counts.items():
            self.health_counts[hid] = dict(per_feature)

    def finish(self) -> tuple[dict[str, BucketBook], list[ClosedBuckets]]:
        """The books to write and the closed minutes to send, per model touched."""
        new_health: dict[str, dict[BucketId, HealthSums]] = {}
        ids = np.asarray(self.prediction_ids, dtype=np.int64)
        values = np.asarray(self.predictions, dtype=np.float64)
        order = np.argsort(ids, kind="stable")
        ids, values = ids[order], values[order]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]).tolist() if ids.size else []
        for start, end in zip(starts, [*starts[1:], ids.size], strict=False):
            hid = int(ids[start])
            model_key, version, minute = self.health_keys[hid]
            group = values[start:end]
            sums = HealthSums(int(group.size), dict(sorted(self.health_counts.get(hid, {}).items())),
                              ErrorSums().update_many(group))
            new_health.setdefault(model_key, {})[(version, minute)] = sums
        new_errors: dict[str, dict[BucketId, ErrorSums]] = {}
        for (model_key, version, minute), errs in self.errors.items():
            new_errors.setdefault(model_key, {})[(version, minute)] = ErrorSums().update_many(
                np.asarray(errs, dtype=np.float64))
        books: dict[str, BucketBook] = {}
        closed: list[ClosedBuckets] = []
        for model_key, state in sorted(self.books.items()):
            if not state.touched:
                continue
            health = dict(state.book.health)
            for bid, sums in new_health.get(model_key, {}).items():
                health[bid] = health[bid].merge(sums) if bid in health else sums
            errors = dict(state.book.errors)
            for bid, esums in new_errors.get(model_key, {}).items():
                errors[bid] = errors[bid].merge(esums) if bid in errors else esums
            sent = dict(state.book.sent)
            for slot, mark in sorted(state.event_ms.items()):
                through = (mark - self.lateness_ms) // MINUTE_MS
                if through <= sent.get(slot, -(1 << 62)):
                    continue
                buckets = health if topic_slot(slot) == "f" else errors
                gone = {bid: buckets.pop(bid) for bid in sorted(buckets) if bid[1] < through}
                sent[slot] = through
                if topic_slot(slot) == "f":
                    closed.append(ClosedBuckets(self.partition, model_key, slot, through, health=gone))  # type: ignore[arg-type]
                else:
                    closed.append(ClosedBuckets(self.partition, model_key, slot, through, errors=gone))  # type: ignore[arg-type]
            books[model_key] = BucketBook(dict(sorted(health.items())), dict(sorted(errors.items())),
                                          state.event_ms, state.offsets, sent)
        return books, closed


def count_health(baseline: Baseline, codes_by_feature: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 health_ids: np.ndarray, n_health: int) -> dict[int, dict[str, tuple[int, int, int]]]:
    """Per health id, each feature's (missing, mismatch, out of range) counts, from the bin codes
    the ingest already computed: a few `bincount`s per feature, nothing per record in Python.
    Out of range: the numeric baseline's two open outer bins."""
    keep = health_ids >= 0
    ids = health_ids[keep]
    per_feature: dict[str, tuple[list[int], list[int], list[int]]] = {}
    for name, (codes, mismatch) in codes_by_feature.items():
        bins = baseline.features[name].bins
        c, w = codes[keep], mismatch[keep]
        missing = np.bincount(ids[(c == bins.missing_index) & ~w], minlength=n_health)
        wrong = np.bincount(ids[w], minlength=n_health)
        if bins.kind == "numeric":
            outside = np.bincount(ids[(c == 0) | (c == bins.n_bins - 2)], minlength=n_health)
        else:
            outside = np.zeros(n_health, dtype=np.int64)
        per_feature[name] = (missing.tolist(), wrong.tolist(), outside.tolist())
    present = sorted(set(ids.tolist()))
    return {hid: {name: (m[hid], w[hid], o[hid]) for name, (m, w, o) in per_feature.items()}
            for hid in present}


def error_of(task: str, prediction: float, outcome: float) -> float:
    """Squared error (classification) or absolute error (regression): the error stream's value."""
    d = prediction - outcome
    return d * d if task == "classification" else abs(d)

