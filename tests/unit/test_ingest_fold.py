"""The ingest fold, without a broker: redelivery after a crash is absorbed by the watermarks,
genuine duplicates are dropped, early outcomes wait for their prediction — and a replay with
arbitrary lost writes and rewinds equals one clean pass (invariant 1, the bytewax way)."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.tables.ingest import join_key
from model_monitoring.tables.join_buffer import JoinEntry
from model_monitoring.tables.keys import PartialKey, is_arrival_key, is_partial_key
from model_monitoring.tables.partial import PartialState
from tests.support.baselines import two_feature_baseline
from tests.support.fold_store import FoldStore

DAY = 86_400_000
T0 = 1_795_000_000_000
TTL = 10 * DAY  # short, so that a log of a few days holds outcomes on both sides of it


def baseline():
    return two_feature_baseline(500)


BASELINE = baseline()


def pred(pid: str, ts: int, x: Any = 0.1, c: Any = "a", seg: str | None = None) -> InferenceRecord:
    return InferenceRecord(pid, "t", "m", "1", ts, 0.7, seg, {"x": x, "c": c})


def outc(pid: str, y: float, ts: int = T0 + DAY) -> OutcomeRecord:
    return OutcomeRecord(pid, "t", "m", y, ts)


class Store(FoldStore):
    """Table stand-ins: dicts of bytes, like the changelog-backed tables."""

    def __init__(self) -> None:
        super().__init__(BASELINE, join_ttl_ms=TTL)

    def apply(self, kind: str, batch: list, lose: float = 0.0, rng: random.Random | None = None) -> None:
        f = self.fold()
        if kind == "f":
            res = f.fold_predictions(batch, self.get_partial, self.get_join, self.meta.get(kind, -1))
        else:
            res = f.fold_outcomes(batch, self.get_partial, self.get_join, self.meta.get(kind, -1), TTL)
        # the agent writes the join entries, waits for their acks, then writes the partials:
        # a crash loses any subset of the join writes, and then every partial write; or, once
        # the joins are in, any subset of the partial writes
        lost_join = False
        for k, v in res.joins.items():
            if rng and rng.random() < lose:
                lost_join = True
            else:
                self.joins[k] = v.to_bytes()
        for k, v in res.partials.items():
            if not (lost_join or (rng and rng.random() < lose)):
                self.partials[k] = v.to_bytes()
        self.meta[kind] = max(self.meta.get(kind, -1), res.max_event_ms)

    def totals(self) -> dict[bytes, tuple[Any, Any]]:
        return {k: (PartialState.from_bytes(v).histogram.to_json(),
                    PartialState.from_bytes(v).performance.to_json(),
                    PartialState.from_bytes(v).expired_outcomes) for k, v in self.partials.items()}


def test_prediction_then_outcome_joins_once_and_duplicates_are_dropped() -> None:
    s = Store()
    s.apply("f", [(0, 0, pred("p1", T0)), (1, 0, pred("p1", T0))])  # a duplicate message
    s.apply("o", [(0, 0, outc("p1", 1.0)), (1, 0, outc("p1", 1.0))])
    (state,) = [PartialState.from_bytes(v) for k, v in s.partials.items() if is_partial_key(k)]
    (arrived,) = [PartialState.from_bytes(v) for k, v in s.partials.items() if is_arrival_key(k)]
    assert arrived.performance == state.performance  # the outcome-arrival view holds the pair too
    assert state.histogram.n == 1
    assert state.performance.n == 1
    assert state.performance.squared.total == (0.7 - 1.0) ** 2


def test_early_outcome_waits_for_its_prediction() -> None:
    s = Store()
    s.apply("o", [(0, 0, outc("p1", 0.0))])
    assert s.partials == {}
    assert JoinEntry.from_bytes(s.joins[join_key(0, "p1")]).outcome is not None
    s.apply("f", [(0, 0, pred("p1", T0))])
    (state,) = [PartialState.from_bytes(v) for k, v in s.partials.items() if is_partial_key(k)]
    assert state.performance.n == 1 and state.performance.absolute.total == 0.7


def test_redelivered_batch_is_not_counted_twice() -> None:
    s = Store()
    batch = [(i, 0, pred(f"p{i}", T0 + i)) for i in range(10)]
    s.apply("f", batch)
    before = s.totals()
    s.apply("f", batch)  # the same offsets again, as after a crash before the commit
    assert s.totals() == before


def test_redelivery_after_only_the_join_write_landed_still_counts_the_event() -> None:
    s = Store()
    batch = [(5, 0, pred("p1", T0))]
    f = s.fold()
    res = f.fold_predictions(batch, s.get_partial, s.get_join, -1)
    for k, v in res.joins.items():  # the partial's write was lost in the crash
        s.joins[k] = v.to_bytes()
    s.apply("f", batch)
    (state,) = [PartialState.from_bytes(v) for v in s.partials.values()]
    assert state.histogram.n == 1


def test_type_mismatch_and_missing_values_are_counted_not_fatal() -> None:
    s = Store()
    s.apply("f", [(0, 0, pred("p1", T0, x="oops")), (1, 0, pred("p2", T0, x=None, c=3))])
    (state,) = [PartialState.from_bytes(v) for v in s.partials.values()]
    assert state.histogram.n == 2
    assert state.histogram.type_mismatch["x"] == 1 and state.histogram.type_mismatch["c"] == 1


def test_too_late_predictions_are_rejected() -> None:
    s = Store()
    s.apply("f", [(0, 0, pred("p1", T0 + 100 * DAY))])
    res = s.fold().fold_predictions([(1, 0, pred("p2", T0))], s.get_partial, s.get_join, s.meta["f"])
    assert [r.reason for r in res.rejected] == ["too_late"]


def log_of(n: int, seed: int) -> list[tuple[str, int, Any]]:
    rng = random.Random(seed)
    features, outcomes = [], []
    for i in range(n):
        seg = rng.choice([None, "emea", "apac"])
        ts = T0 + rng.randrange(3 * DAY)
        features.append(pred(f"p{i}", ts, x=rng.gauss(0, 1), c=rng.choice(["a", "b", "z", None]), seg=seg))
        if rng.random() < 0.8:  # most 4–9 days after the prediction, some just past the TTL
            lag = rng.randrange(4 * DAY, 9 * DAY) if rng.random() < 0.85 else TTL + rng.randrange(1, DAY)
            outcomes.append(outc(f"p{i}", float(rng.random() < 0.5), ts + lag))
        if rng.random() < 0.1:
            features.append(features[-1])  # producer retry
    rng.shuffle(outcomes)  # outcomes arrive in any order, some before their prediction
    return ([("f", off, r) for off, r in enumerate(features)] +
            [("o", off, r) for off, r in enumerate(outcomes)])


def run(log: list[tuple[str, int, Any]], *, seed: int | None, batch: int) -> Store:
    """Fold the two topics interleaved in batches; with a seed, crash now and then: lose some
    writes of the batch and resume that topic from an earlier commit (never past the start of
    the batch whose writes were lost: faust flushes the producer before committing)."""
    s = Store()
    rng = random.Random(seed) if seed is not None else None
    queues = {k: [e for e in log if e[0] == k] for k in ("f", "o")}
    pos = {"f": 0, "o": 0}
    steps = 0
    while any(pos[k] < len(queues[k]) for k in queues) and steps < 10_000:
        steps += 1
        kind = "f" if (rng or random.Random(steps)).random() < 0.5 else "o"
        if pos[kind] >= len(queues[kind]):
            kind = "o" if kind == "f" else "f"
        chunk = queues[kind][pos[kind]:pos[kind] + batch]
        crash = rng is not None and rng.random() < 0.3
        s.apply(kind, [(off, 0, rec) for _, off, rec in chunk], lose=0.5 if crash else 0.0, rng=rng)
        if crash:  # resume from the last commit: at or before the start of the lost batch
            pos[kind] = max(0, pos[kind] - rng.randrange(0, 2 * batch))  # type: ignore[union-attr]
        else:
            pos[kind] += len(chunk)
    return s


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 40))
def test_replay_with_lost_writes_and_rewinds_equals_one_pass(seed: int, batch: int) -> None:
    log = log_of(150, seed)
    clean = run(log, seed=None, batch=batch)
    crashed = run(log, seed=seed, batch=batch)
    assert crashed.totals() == clean.totals()
    in_order = Store()  # every prediction before any outcome: the offline fold's order
    for kind in ("f", "o"):
        in_order.apply(kind, [(off, 0, rec) for k, off, rec in log if k == kind])
    assert clean.totals() == in_order.totals()
    states = [PartialState.from_bytes(v) for v in clean.partials.values()]
    assert sum(s.histogram.n for s in states) == 150
    predicted = {rec.prediction_id: rec.timestamp_ms for k, _, rec in log if k == "f"}
    late = sum(1 for k, _, rec in log if k == "o" and rec.timestamp_ms - predicted[rec.prediction_id] > TTL)
    assert late > 0 or len(log) < 150
    assert late == sum(s.expired_outcomes for s in states)


def test_partial_key_round_trip_with_separators_in_ids() -> None:
    key = PartialKey(3, "ten|ant", "mo%del", "v|1", "", 20_000)
    assert PartialKey.decode(key.encode()) == key
