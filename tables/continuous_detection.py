"""Continuous detection of one (tenant, model): closed minute buckets of every source partition
in, merged and fed in event-time order to one river detector per stream, out the confirmed
changes. `apply(book, closed, baseline_for, policy) -> (book, changes)` is pure.

Streams, per model version: each feature's missing, type-mismatch and out-of-range share, the
prediction's mean, and the per-outcome error (squared for classification: `brier`, absolute for
regression: `mae`). A stream is fed one value per observation: the mean of consecutive closed
minutes that hold at least `min_events` events (`min_outcomes` outcomes) — never per record.

Merging: a minute is fed once every active log has closed it (the smallest of their closed
marks; a log is a partition's own input, or the records forwarded to it from one source
partition). Every partition's own log of a topic (`policy.partitions`) is waited for from the
first minute heard of on that topic: one not heard from yet stands there, so the feed does not
depend on which partition the detectors hear from first. A log whose mark trails the most
advanced one by more than `idle_ms` is idle and holds nothing back; a bucket that then arrives
for a minute already fed is late and counted, not fed.

A detector's signal is a candidate. It is confirmed only on fresh data, the observations after
the signal, once they hold `confirm_events` (`confirm_outcomes`): a one-sided z-test at level
α that the stream's true value exceeds its reference by the tolerance (shares: max(p₀(1+tol),
p₀+min_share_change) with p₀ the baseline's share, else the stream's history; errors: the
baseline's Brier/MAE × (1+tol), else the history's mean × (1+tol); the prediction mean: two-sided,
beyond tol × |history mean|). The data that chose the cut never tests it. Budget: at most
`max_candidates` candidates per stream and model-week are tested; the error stream's each at
α = budget × error_budget_share / max_candidates, a health stream's at α = budget ×
(1 − error_budget_share) / (health streams × max_candidates), so by (weighted) Bonferroni a
stationary model raises at most `budget` false alerts per model-week, across all its streams
together."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.change_detector import DetectorState
from model_monitoring.tables.confirmation import (
    SHARE_VARIANCE_FLOOR,
    Test,
    error_test,
    share_test,
    standardized,
    two_sided_test,
)
from model_monitoring.tables.error_sums import ErrorSums
from model_monitoring.tables.health_buckets import MINUTE_MS, BucketId, ClosedBuckets, HealthSums, topic_slot

WEEK_MINUTES = 7 * 24 * 60
SHARE_METRICS = ("missing_share", "type_mismatch_share", "out_of_range_share")
BaselineFor = Callable[[str], Baseline | None]  # model version -> its baseline


@dataclass(frozen=True)
class DetectionPolicy:
    detector: str = "adwin"
    # ADWIN's δ: its signal is only a candidate, tested on fresh data, so it may be sensitive
    params: Mapping[str, object] = field(default_factory=lambda: {"delta": 0.1})
    min_events: int = 100
    min_outcomes: int = 30
    confirm_events: int = 300
    confirm_outcomes: int = 150
    tolerance: float = 0.10
    min_share_change: float = 0.05
    false_alarm_budget: float = 0.05
    # of the budget, the error stream's share (one stream, the one a degraded model shows in
    # first); the health streams share the rest evenly (`stream_alpha`)
    error_budget_share: float = 0.5
    max_candidates: int = 5
    cooldown_ms: int = 6 * 3600 * 1000
    idle_ms: int = 5 * MINUTE_MS
    # the input topics' partitions: each one's own log of a topic is waited for from the first
    # closed minute the model's detectors hear of on that topic, until it is idle (`apply`)
    partitions: int = 1


@dataclass(frozen=True)
class ConfirmedChange:
    version: str
    metric: str        # missing_share, …, prediction_mean, brier or mae
    subject: str       # the feature, "prediction", or the metric
    detector: str
    change_at_ms: int  # the start of the observation at which the detector signalled
    confirmed_at_ms: int  # the end of the fresh data that confirmed it
    value: float
    reference: float
    threshold: float
    sample_size: int
    p_value: float

    @property
    def is_performance(self) -> bool:
        return self.metric in ("brier", "mae")


EMPTY = ErrorSums()


def share_sums(n: int, k: int) -> ErrorSums:
    """k ones among n events, as exact error sums (mean = share)."""
    units = k << ErrorSums.UNIT_BITS
    return ErrorSums.from_units(n, units, units)


@dataclass(frozen=True)
class StreamState:
    detector: DetectorState
    pending: ErrorSums = field(default_factory=ErrorSums)   # closed minutes not fed yet
    pending_from: int = -1                                  # first minute in pending
    history: ErrorSums = field(default_factory=ErrorSums)   # fed, before any open candidate
    candidate_at: int | None = None                         # minute of the signal under test
    fresh: ErrorSums = field(default_factory=ErrorSums)     # fed after the signal
    cooldown_until: int = -1
    week: int = -1
    candidates_this_week: int = 0

    def to_json(self) -> list[object]:
        return [self.detector.name, base64.b64encode(self.detector.state).decode(),
                self.pending.to_json(), self.pending_from, self.history.to_json(),
                self.candidate_at, self.fresh.to_json(), self.cooldown_until, self.week,
                self.candidates_this_week]

    @classmethod
    def from_json(cls, doc: list[object]) -> StreamState:
        name, state, pending, pending_from, history, cand, fresh, cool, week, count = doc
        return cls(DetectorState.from_state(str(name), base64.b64decode(str(state))), ErrorSums.from_json(pending),
                   int(pending_from), ErrorSums.from_json(history),  # type: ignore[call-overload]
                   None if cand is None else int(cand), ErrorSums.from_json(fresh),  # type: ignore[call-overload]
                   int(cool), int(week), int(count))  # type: ignore[call-overload]


@dataclass(frozen=True)
class ModelDetectors:
    """The value of one (partition, tenant:model) in the `detectors` table."""

    marks: Mapping[str, int] = field(default_factory=dict)  # "partition:log" -> closed through
    health: Mapping[BucketId, HealthSums] = field(default_factory=dict)  # closed, not fed yet
    errors: Mapping[BucketId, ErrorSums] = field(default_factory=dict)
    fed: Mapping[str, int] = field(default_factory=dict)    # topic slot -> minutes below are fed
    streams: Mapping[str, StreamState] = field(default_factory=dict)
    late_events: int = 0
    # topic slot -> the earliest minute of the first closed buckets heard of on it: where a
    # partition's own log not heard from yet is taken to stand (`apply`, `_first_minute`)
    started: Mapping[str, int] = field(default_factory=dict)
    # the outbox: alerts decided and not yet known to be published, as (kind, message). Saved
    # with the detector state that decided them, before they are sent, and cleared after: a
    # crash in between leaves them here, and the redelivered input (whose replay the marks
    # make a no-op) sends them again, with the same eventId.
    outbox: tuple[tuple[str, Mapping[str, object]], ...] = ()

    def to_bytes(self) -> bytes:
        doc: dict[str, object] = {
            "m": dict(self.marks), "f": dict(self.fed), "l": self.late_events,
            "h": [[v, m, self.health[(v, m)].to_json()] for v, m in sorted(self.health)],
            "e": [[v, m, self.errors[(v, m)].to_json()] for v, m in sorted(self.errors)],
            "s": {k: self.streams[k].to_json() for k in sorted(self.streams)}}
        if self.outbox:
            doc["o"] = [[kind, dict(message)] for kind, message in self.outbox]
        if self.started:
            doc["a"] = dict(self.started)
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ModelDetectors:
        doc = orjson.loads(raw)
        return cls({str(k): int(v) for k, v in doc["m"].items()},
                   {(str(v), int(m)): HealthSums.from_json(x) for v, m, x in doc["h"]},
                   {(str(v), int(m)): ErrorSums.from_json(x) for v, m, x in doc["e"]},
                   {str(k): int(v) for k, v in doc["f"].items()},
                   {str(k): StreamState.from_json(v) for k, v in doc["s"].items()}, int(doc["l"]),
                   {str(k): int(v) for k, v in doc.get("a", {}).items()},
                   tuple((str(kind), dict(message)) for kind, message in doc.get("o", ())))


def stream_key(version: str, metric: str, subject: str) -> str:
    return "\x1f".join((version, metric, subject))


def _merge_into(target: dict[BucketId, HealthSums] | dict[BucketId, ErrorSums], bid: BucketId,
                sums: HealthSums | ErrorSums) -> None:
    old = target.get(bid)
    target[bid] = old.merge(sums) if old is not None else sums  # type: ignore[assignment, arg-type]


def apply(book: ModelDetectors, closed: ClosedBuckets, baseline_for: BaselineFor,
          policy: DetectionPolicy) -> tuple[ModelDetectors, list[ConfirmedChange]]:
    """One partition's closed minutes: merged, fed as far as every active partition has closed."""
    mark_key = f"{closed.partition}:{closed.slot}"
    if closed.closed_through <= book.marks.get(mark_key, -(1 << 62)):
        return book, []  # redelivered, or older than what this log already closed
    marks = {**book.marks, mark_key: closed.closed_through}
    topic = topic_slot(closed.slot)  # forwarded logs ("f@3") merge with their topic's
    fed_through = book.fed.get(topic, -(1 << 62))
    health, errors, late = dict(book.health), dict(book.errors), book.late_events
    for bid, hs in closed.health.items():
        if bid[1] < fed_through:
            late += hs.n
        else:
            _merge_into(health, bid, hs)
    for bid, es in closed.errors.items():
        if bid[1] < fed_through:
            late += es.n
        else:
            _merge_into(errors, bid, es)
    started = book.started if topic in book.started else {**book.started, topic: _first_minute(closed)}
    slot_marks = [m for k, m in marks.items() if topic_slot(k.split(":", 1)[1]) == topic]
    # a partition's own log not heard from yet stands where the topic was first heard of (as a
    # log that has closed nothing since): it holds the feed back until it is idle too. So a log
    # that starts sending later than another (live: a minute; a replay: within the idle window)
    # is merged, not late.
    slot_marks += [started[topic] for p in range(policy.partitions) if f"{p}:{topic}" not in marks]
    idle_minutes = policy.idle_ms // MINUTE_MS
    through = min(m for m in slot_marks if m >= max(slot_marks) - idle_minutes)
    streams = dict(book.streams)
    changes: list[ConfirmedChange] = []
    if through > fed_through:
        if topic == "f":
            for bid in sorted(b for b in health if b[1] < through):
                _feed_health(streams, bid, health.pop(bid), baseline_for, policy, changes)
        else:
            for bid in sorted(b for b in errors if b[1] < through):
                _feed_errors(streams, bid, errors.pop(bid), baseline_for, policy, changes)
        fed = {**book.fed, topic: through}
    else:
        fed = dict(book.fed)
    return ModelDetectors(marks, health, errors, fed, streams, late, started, book.outbox), changes


def _first_minute(closed: ClosedBuckets) -> int:
    """The earliest minute of the first closed buckets heard of on a topic (their closing mark's
    minute when they hold none): where its logs not heard from yet are taken to stand."""
    return min((bid[1] for bid in (*closed.health, *closed.errors)), default=closed.closed_through - 1)


def _feed_health(streams: dict[str, StreamState], bid: BucketId, sums: HealthSums,
                 baseline_for: BaselineFor, policy: DetectionPolicy,
                 changes: list[ConfirmedChange]) -> None:
    version, minute = bid
    baseline = baseline_for(version)
    for name, (missing, mismatch, outside) in sorted(sums.features.items()):
        fb = baseline.features.get(name) if baseline is not None else None
        expected: dict[str, float | None] = {"missing_share": None, "type_mismatch_share": 0.0,
                                             "out_of_range_share": None}
        if fb is not None:
            shares = fb.expected_shares()
            expected["missing_share"] = float(shares[-1])
            if fb.bins.kind == "numeric":
                expected["out_of_range_share"] = float(shares[0] + shares[-2])
        for metric, k in zip(SHARE_METRICS, (missing, mismatch, outside), strict=True):
            if metric == "out_of_range_share" and (fb is None or fb.bins.kind != "numeric"):
                continue
            _observe(streams, stream_key(version, metric, name), minute, share_sums(sums.n, k),
                     policy.min_events, policy.confirm_events, share_test(expected[metric], policy.tolerance, policy.min_share_change, policy.confirm_events),
                     policy, changes, version, metric, name)
    if sums.prediction.n:
        _observe(streams, stream_key(version, "prediction_mean", "prediction"), minute, sums.prediction,
                 policy.min_events, policy.confirm_events, two_sided_test(policy.tolerance, policy.confirm_events), policy, changes,
                 version, "prediction_mean", "prediction")


def _feed_errors(streams: dict[str, StreamState], bid: BucketId, sums: ErrorSums,
                 baseline_for: BaselineFor, policy: DetectionPolicy,
                 changes: list[ConfirmedChange]) -> None:
    version, minute = bid
    baseline = baseline_for(version)
    if baseline is None:
        return
    metric = "brier" if baseline.task == "classification" else "mae"
    reference = baseline.brier if metric == "brier" else baseline.mae
    _observe(streams, stream_key(version, metric, metric), minute, sums, policy.min_outcomes,
             policy.confirm_outcomes, error_test(reference, policy.tolerance, policy.confirm_outcomes), policy, changes, version,
             metric, metric)


def stream_alpha(streams: Mapping[str, StreamState], version: str, metric: str,
                 policy: DetectionPolicy) -> float:
    """The level of one candidate's test: the model-week's budget split between the error
    stream (`error_budget_share` of it) and the health streams (the rest, evenly), each share
    over `max_candidates` tests. A weighted Bonferroni: the levels of all the tests a stationary
    model-week can run sum to at most the budget."""
    n_health = sum(1 for k in streams
                   if k.split("\x1f", 1)[0] == version and k.split("\x1f")[1] not in ("brier", "mae"))
    if metric in ("brier", "mae"):
        share = policy.error_budget_share if n_health else 1.0
        return policy.false_alarm_budget * share / policy.max_candidates
    return policy.false_alarm_budget * (1 - policy.error_budget_share) / (max(n_health, 1) * policy.max_candidates)


def _observe(streams: dict[str, StreamState], key: str, minute: int, sums: ErrorSums,
             min_count: int, confirm_count: int, test: Test, policy: DetectionPolicy,
             changes: list[ConfirmedChange], version: str, metric: str, subject: str) -> None:
    """One closed minute of one stream (hot path: one new state value, built once)."""
    state = streams.get(key) or StreamState(DetectorState.new(policy.detector, policy.params))
    pending = state.pending.merge(sums)
    start = state.pending_from if state.pending.n else minute
    if pending.n < min_count:
        streams[key] = StreamState(state.detector, pending, start, state.history, state.candidate_at,
                                   state.fresh, state.cooldown_until, state.week, state.candidates_this_week)
        return
    value = standardized(pending, state.history, min_count,
                         SHARE_VARIANCE_FLOOR if metric in SHARE_METRICS else 0.0)
    detector, signals = state.detector.update_many([value]) if value is not None else (state.detector, [])
    history, candidate_at, fresh = state.history, state.candidate_at, state.fresh
    cooldown, week, count = state.cooldown_until, state.week, state.candidates_this_week
    if candidate_at is not None:
        fresh = fresh.merge(pending)
        decision = "wait"
        if fresh.n >= min_count:
            alpha = stream_alpha(streams, version, metric, policy)
            first = state.fresh.n < confirm_count <= fresh.n
            decision, reference, threshold, p = test(fresh, history, alpha, first)
        if decision == "confirm":
            changes.append(ConfirmedChange(version, metric, subject, policy.detector,
                                           candidate_at * MINUTE_MS, (minute + 1) * MINUTE_MS,
                                           fresh.mean() or 0.0, reference, threshold, fresh.n, p))
            # the new regime is the reference from now on
            detector, history, candidate_at, fresh = (DetectorState.new(policy.detector, policy.params),
                                                      fresh, None, EMPTY)
            cooldown = minute + policy.cooldown_ms // MINUTE_MS
        elif decision == "reject":  # not confirmed: the fresh data joins the history
            history, candidate_at, fresh = history.merge(fresh), None, EMPTY
    else:
        history = history.merge(pending)
        if minute // WEEK_MINUTES != week:
            week, count = minute // WEEK_MINUTES, 0
        if signals and minute >= cooldown and count < policy.max_candidates:
            candidate_at, fresh, count = start, EMPTY, count + 1
    streams[key] = StreamState(detector, EMPTY, -1, history, candidate_at, fresh, cooldown, week, count)


def replay(closed: Iterable[ClosedBuckets], baseline_for: BaselineFor, policy: DetectionPolicy,
           book: ModelDetectors | None = None) -> tuple[ModelDetectors, list[ConfirmedChange]]:
    """Fold a sequence of closed-bucket messages (tests and the bench)."""
    book = book or ModelDetectors()
    changes: list[ConfirmedChange] = []
    for message in closed:
        book, more = apply(book, message, baseline_for, policy)
        changes += more
    return book, changes
