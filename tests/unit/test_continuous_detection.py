"""Continuous detection, pure: the minute buckets of the ingest fold do not depend on batch
boundaries and absorb redelivery; detector state survives serialisation exactly; a replay with
crashes and duplicates equals one pass; a stationary stream stays quiet, a broken feature is
confirmed; a confirmed change opens the incident the weekly run then reports `ongoing`."""

from __future__ import annotations

import pickle
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from river import drift

from bench.continuous_streams import minutes
from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.tables.change_detector import DetectorState
from model_monitoring.tables.continuous_detection import DetectionPolicy, ModelDetectors, apply, replay
from model_monitoring.tables.continuous_events import incident_key, publish
from model_monitoring.tables.health_buckets import MINUTE_MS, BucketBook, BucketTracker, ClosedBuckets
from model_monitoring.tables.incidents import Check, IncidentBook, IncidentPolicy, RunRef, fold
from model_monitoring.tables.ingest import IngestFold
from tests.support.baselines import two_feature_baseline

T0 = 1_795_000_000_000 - 1_795_000_000_000 % MINUTE_MS


def _baseline():
    return two_feature_baseline(2000)


BASELINE = _baseline()


def _records(n: int, seed: int) -> list[tuple[int, int, InferenceRecord]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = T0 + i * 400 + rng.randrange(-30_000, 30_000)  # out of order by up to 30 s
        x = None if rng.random() < 0.1 else rng.gauss(0, 1) * (100 if i > n // 2 else 1)
        out.append((i, 0, InferenceRecord(f"p{i}", "t", "m", "1", ts, rng.random(), None,
                                          {"x": x, "c": rng.choice(["a", "b", 3])})))
    return out


def _fold_in_batches(records, cuts, lateness_ms=10_000):
    """Fold records in batches split at `cuts`, carrying the stored values: the closed buckets
    sent, and the open books at the end."""
    books: dict[str, bytes] = {}
    partials: dict[bytes, object] = {}
    joins: dict[bytes, object] = {}
    sent: list[ClosedBuckets] = []
    bounds = [0, *sorted(set(cuts)), len(records)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        tracker = BucketTracker(0, lateness_ms, lambda k: BucketBook.from_bytes(books[k]) if k in books else None)
        fold = IngestFold(0, bucket_ms=86_400_000, retention_ms=10**12,
                          baseline_for=lambda *_: BASELINE, buckets=tracker)
        out = fold.fold_predictions(records[lo:hi], partials.get, joins.get, -1)
        partials.update(out.partials)
        joins.update(out.joins)
        books.update({k: b.to_bytes() for k, b in out.bucket_books.items()})
        sent += out.closed_buckets
    return sent, books


def _merged(sent):
    health = {}
    for c in sent:
        for bid, h in c.health.items():
            health[bid] = health[bid].merge(h) if bid in health else h
    return health


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(1, 599), max_size=5), st.integers(0, 3))
def test_buckets_do_not_depend_on_batch_boundaries(cuts, seed):
    records = _records(600, seed)
    one_sent, one_books = _fold_in_batches(records, [])
    many_sent, many_books = _fold_in_batches(records, cuts)
    assert _merged(one_sent) == _merged(many_sent)
    assert one_books == many_books
    assert one_sent[-1].closed_through == many_sent[-1].closed_through


def test_buckets_count_the_features_health():
    records = _records(1500, 1)
    sent, books = _fold_in_batches(records, [700], lateness_ms=60_000)
    total = _merged(sent)
    open_ = BucketBook.from_bytes(books["t:m"]).health
    all_ = {**total, **open_}
    assert sum(h.n for h in all_.values()) == 1500  # nothing out of order by more than the lateness
    assert sum(h.features["c"][1] for h in all_.values()) == sum(
        1 for _, _, r in records if r.features["c"] == 3)
    assert sum(h.features["x"][0] for h in all_.values()) == sum(
        1 for _, _, r in records if r.features["x"] is None)
    late_sent, late_books = _fold_in_batches(records, [700], lateness_ms=1_000)
    late_all = {**_merged(late_sent), **BucketBook.from_bytes(late_books["t:m"]).health}
    assert 0 < 1500 - sum(h.n for h in late_all.values()) < 1500  # late records are not counted


def test_redelivered_batch_is_not_counted_twice():
    records = _records(600, 2)
    books: dict[str, bytes] = {}
    sent: list[ClosedBuckets] = []
    for batch in (records[:400], records[200:600], records[100:600]):  # rewinds: redelivery
        tracker = BucketTracker(0, 10_000, lambda k: BucketBook.from_bytes(books[k]) if k in books else None)
        fold = IngestFold(0, bucket_ms=86_400_000, retention_ms=10**12,
                          baseline_for=lambda *_: BASELINE, buckets=tracker)
        out = fold.fold_predictions(batch, {}.get, {}.get, -1)  # partials lost: the books alone guard
        books.update({k: b.to_bytes() for k, b in out.bucket_books.items()})
        sent += out.closed_buckets
    clean, clean_books = _fold_in_batches(records, [])
    assert _merged(sent) == _merged(clean) and books == clean_books


def test_detector_state_survives_serialisation_exactly():
    rng = np.random.default_rng(3)
    values = [float(v) for v in np.r_[rng.normal(0, 1, 600), rng.normal(0.8, 1, 600)]]
    for name in ("adwin", "page_hinkley", "kswin"):
        whole, signals = DetectorState.new(name, {}).update_many(values)
        state, first = DetectorState.new(name, {}).update_many(values[:500])
        assert pickle.dumps(state.detector, protocol=5) == state.state  # deterministic bytes
        state = DetectorState.from_state(state.name, state.state)
        state, second = state.update_many(values[500:])
        assert signals == first + [i + 500 for i in second], name
        assert state.state == whole.state, name
    assert isinstance(DetectorState.from_state('kswin', whole.state).detector, drift.KSWIN)


POLICY = DetectionPolicy()


def _stream(seed, **kw):
    return list(minutes(BASELINE, np.random.default_rng(seed), start_minute=T0 // MINUTE_MS,
                        partitions=kw.pop("partitions", 2), **kw))


def test_replay_with_crashes_and_duplicates_equals_one_pass():
    messages = _stream(5, n_minutes=240, null_feature="x", change_minute=T0 // MINUTE_MS + 120)
    one, changes = replay(messages, lambda v: BASELINE, POLICY)
    rng = random.Random(9)
    book, seen = ModelDetectors(), []
    i = 0
    while i < len(messages):
        book, more = apply(book, messages[i], lambda v: BASELINE, POLICY)
        seen += more
        if rng.random() < 0.05:  # crash: restore from the changelog bytes, redeliver a few
            book = ModelDetectors.from_bytes(book.to_bytes())
            back = rng.randrange(0, 5)
            for m in messages[max(0, i - back):i + 1]:
                book, dup = apply(book, m, lambda v: BASELINE, POLICY)
                assert dup == []
        i += 1
    assert book.to_bytes() == one.to_bytes()
    assert seen == changes


_INTERLEAVED = _stream(7, partitions=3, n_minutes=90, null_feature="x", change_minute=T0 // MINUTE_MS + 45)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=len(_INTERLEAVED), max_size=len(_INTERLEAVED)))
def test_the_feed_does_not_depend_on_how_the_partitions_logs_interleave(picks):
    """Each partition's closed minutes arrive in their log's order, the logs interleaved at
    random (a replay: one partition far ahead of another, or heard from first): within the idle
    window the detectors end in the same state, with the same alerts, and nothing late. Before,
    a partition not heard from yet held nothing back and its first minutes were late."""
    policy = DetectionPolicy(partitions=3, idle_ms=10**6 * MINUTE_MS)
    logs = [[m for m in _INTERLEAVED if m.partition == p] for p in range(3)]
    order = []
    for pick in picks:  # the next message of the picked log, or of the next log that has one
        for p in (pick, (pick + 1) % 3, (pick + 2) % 3):
            if logs[p]:
                order.append(logs[p].pop(0))
                break
    one, changes = replay(_INTERLEAVED, lambda v: BASELINE, policy)
    book, seen = ModelDetectors(), []
    for m in order:
        book, more = apply(book, m, lambda v: BASELINE, policy)
        seen += more
    assert book.late_events == one.late_events == 0
    assert {k: v.to_json() for k, v in book.streams.items()} == {k: v.to_json() for k, v in one.streams.items()}
    assert book.fed == one.fed and seen == changes and changes


def test_a_feature_turning_null_is_confirmed_within_minutes():
    change = T0 // MINUTE_MS + 300
    _, changes = replay(_stream(6, n_minutes=400, null_feature="x", change_minute=change),
                        lambda v: BASELINE, POLICY)
    missing = [c for c in changes if c.metric == "missing_share" and c.subject == "x"]
    assert missing, changes
    delay = (missing[0].confirmed_at_ms // MINUTE_MS) - change
    assert 0 < delay <= 15
    assert all(c.change_at_ms >= (change - 2) * MINUTE_MS for c in changes)


def test_stationary_stream_raises_nothing():
    _, changes = replay(_stream(7, n_minutes=3 * 24 * 60), lambda v: BASELINE, POLICY)
    assert changes == []


def test_confirmed_change_opens_the_incident_the_weekly_run_reports_ongoing():
    change = T0 // MINUTE_MS + 300
    _, changes = replay(_stream(8, n_minutes=400, null_feature="x", change_minute=change),
                        lambda v: BASELINE, POLICY)
    first = next(c for c in changes if c.subject == "x")
    book, kind, doc = publish(IncidentBook(), "t:m", first, BASELINE.sample_size)
    assert kind == "drift" and doc["incidentStatus"] == "opened" and doc["jobRunId"] is None
    assert doc["detector"] == "adwin" and doc["metric"] == "missing_share"
    book2, _, again = publish(book, "t:m", first, BASELINE.sample_size)
    assert again["incidentStatus"] == "ongoing" and again["incidentId"] == doc["incidentId"]
    run = RunRef("t:m", "run-1", T0 + 7 * 86_400_000, "2026-12-01T00:00:00Z")
    checks = {incident_key(first): Check(True, "critical", 3.2, 0.08)}
    _, transitions = fold(book, run, checks, IncidentPolicy())
    assert [(t.status, t.incident.incident_id) for t in transitions] == [("ongoing", doc["incidentId"])]
    checks = {incident_key(first): Check(True, "warning", 0.2, 0.08)}
    _, transitions = fold(book, run, checks, IncidentPolicy())
    assert [t.status for t in transitions] == ["ongoing"]


def test_brier_step_is_confirmed():
    change = T0 // MINUTE_MS + 600
    _, changes = replay(_stream(10, n_minutes=1500, outcomes_per_min=60, brier_factor=1.5,
                                change_minute=change), lambda v: BASELINE, POLICY)
    brier = [c for c in changes if c.metric == "brier"]
    assert brier and brier[0].confirmed_at_ms > change * MINUTE_MS


def _fold_logs(batches):
    books: dict[str, bytes] = {}
    sent: list[ClosedBuckets] = []
    for batch, slot in batches:
        tracker = BucketTracker(0, 10_000, lambda k: BucketBook.from_bytes(books[k]) if k in books else None)
        fold = IngestFold(0, bucket_ms=86_400_000, retention_ms=10**12,
                          baseline_for=lambda *_: BASELINE, buckets=tracker)
        out = fold.fold_predictions(batch, {}.get, {}.get, -1, slot=slot)
        books.update({k: b.to_bytes() for k, b in out.bucket_books.items()})
        sent += out.closed_buckets
    everything = _merged(sent)
    for bid, h in BucketBook.from_bytes(books["t:m"]).health.items():
        everything[bid] = everything[bid].merge(h) if bid in everything else h
    return sent, everything


def test_forwarded_records_are_counted_once_under_their_own_log():
    """Records forwarded from another source partition carry that partition's offsets: they are
    guarded by their own slot's mark (not the direct log's, whose offsets they collide with),
    and their closed minutes wait for both logs at the detectors."""
    records = _records(600, 4)
    own = records[::2]
    forwarded = [(i, 0, r) for i, (_, _, r) in enumerate(records[1::2])]  # offsets 0, 1, … again
    # interleaved, the forwarded log redelivered from its start once
    sent, counted = _fold_logs([(own[:150], "f"), (forwarded[:200], "f@3"), (own[150:], "f"),
                                (forwarded, "f@3")])
    _, clean = _fold_logs([(own, "f"), (forwarded, "f@3")])
    assert counted == clean
    assert 300 < sum(h.n for h in counted.values()) <= 600  # late ones (per log) left out
    assert {c.slot for c in sent} == {"f", "f@3"}
    # at the detectors, "f@3" is a log of the features topic: a minute is fed once both closed it
    detectors = ModelDetectors()
    for closed in sent:
        detectors, _ = apply(detectors, closed, lambda v: BASELINE, DetectionPolicy())
    assert set(detectors.marks) == {"0:f", "0:f@3"} and set(detectors.fed) == {"f"}
    assert detectors.fed["f"] == min(detectors.marks.values())


def test_the_levels_of_a_model_weeks_tests_sum_to_at_most_the_budget():
    from model_monitoring.tables.continuous_detection import stream_alpha, stream_key

    policy = DetectionPolicy()
    streams = {stream_key("1", metric, subject): None for metric, subject in
               [("missing_share", f"x{i}") for i in range(7)] + [("prediction_mean", "prediction"),
                                                                 ("brier", "brier")]}
    total = sum(stream_alpha(streams, "1", key.split("\x1f")[1], policy) for key in streams)  # type: ignore[arg-type]
    assert abs(total * policy.max_candidates - policy.false_alarm_budget) < 1e-12
    assert stream_alpha(streams, "1", "brier", policy) == policy.false_alarm_budget * 0.5 / policy.max_candidates  # type: ignore[arg-type]
    only_errors = {stream_key("1", "brier", "brier"): None}
    assert stream_alpha(only_errors, "1", "brier", policy) * policy.max_candidates == policy.false_alarm_budget  # type: ignore[arg-type]


def _errors_after(steps, lateness_ms: int = 10_000):
    """Fold batches of predictions ("f") and outcomes ("o") in the order given, carrying the stored
    values; the detectors' error sums per (version, minute), the minutes sent plus those still
    open, and the number of predictions their health buckets counted."""
    books: dict[str, bytes] = {}
    partials: dict[bytes, object] = {}
    joins: dict[bytes, object] = {}
    errors: dict = {}
    counted = 0
    for kind, batch in steps:
        tracker = BucketTracker(0, lateness_ms, lambda k: BucketBook.from_bytes(books[k]) if k in books else None)
        fold = IngestFold(0, bucket_ms=86_400_000, retention_ms=10**12, join_ttl_ms=90 * 86_400_000,
                          baseline_for=lambda *_: BASELINE, buckets=tracker)
        if kind == "f":
            out = fold.fold_predictions(batch, partials.get, joins.get, -1)
        else:
            out = fold.fold_outcomes(batch, partials.get, joins.get, -1, 90 * 86_400_000)
        partials.update(out.partials)
        joins.update(out.joins)
        books.update({k: b.to_bytes() for k, b in out.bucket_books.items()})
        for closed in out.closed_buckets:
            counted += sum(h.n for h in closed.health.values())
            for bid, es in closed.errors.items():
                errors[bid] = errors[bid].merge(es) if bid in errors else es
    for raw in books.values():
        book = BucketBook.from_bytes(raw)
        counted += sum(h.n for h in book.health.values())
        for bid, es in book.errors.items():
            errors[bid] = errors[bid].merge(es) if bid in errors else es
    return errors, counted


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 119))
def test_a_pairs_error_reaches_the_detectors_whichever_side_comes_second(seed: int, cut: int) -> None:
    """Outcomes an hour after their predictions; folded after them, before them (the prediction
    then completes the pair), or half and half, with a redelivered batch: the same errors in the
    same minutes, and every prediction still in its health minute (the outcomes' times, an hour
    later, must not close the predictions' minutes). (Before, a pair completed by its prediction
    gave the detectors nothing.)"""
    rng = random.Random(seed)
    predictions = [(i, 0, InferenceRecord(f"p{i}", "t", "m", "1", T0 + i * 1000, rng.random(), None,
                                          {"x": rng.gauss(0, 1), "c": "a"})) for i in range(120)]
    outcomes = [(i, 0, OutcomeRecord(f"p{i}", "t", "m", float(rng.random() < 0.3), T0 + 3_600_000 + i * 1000))
                for i in range(120)]
    after = _errors_after([("f", predictions), ("o", outcomes)])
    assert sum(es.n for es in after[0].values()) == 120 and after[1] == 120
    before = _errors_after([("o", outcomes), ("f", predictions[:cut]), ("f", predictions[:cut]),
                            ("f", predictions[cut:])])
    mixed = _errors_after([("f", predictions[:cut]), ("o", outcomes), ("f", predictions[cut:]),
                           ("o", outcomes[cut:])])
    assert before == after
    assert mixed == after
