"""Forwarding without a broker: which records are forwarded and what their messages carry, and
the argument of streams/repartition.py as a property — inputs partitioned by CRC32, forwarded
to their murmur2 partition through repartition logs, with crashes that lose writes, lose the
tail of the forwards and forward again, end with exactly the partials of inputs that were
partitioned by murmur2 in the first place (each record folded directly, once)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.tables.forwarding import BadOrigin, Forward, Origin, admit_on_arrival, envelope_of, route
from model_monitoring.tables.ingest import IngestFold
from model_monitoring.tables.join_buffer import JoinEntry
from model_monitoring.tables.keys import is_partial_key
from model_monitoring.tables.partial import FEATURES, OUTCOMES, PartialState, forwarded_slot
from model_monitoring.tables.partitioning import partition_of_prediction
from tests.support.partitioners import crc32_partition
from tests.unit.test_ingest_fold import BASELINE, DAY, T0, outc, pred

N = 3  # partitions


def on(partition: int, n: int = N, prefix: str = "p") -> str:
    """A predictionId that murmur2 puts on `partition`."""
    return next(f"{prefix}{i}" for i in range(10_000) if partition_of_prediction(f"{prefix}{i}", n) == partition)


# ------------------------------------------------------------------ the decision and the message
def test_records_of_this_partition_stay_and_the_rest_go_to_theirs_grouped_per_message() -> None:
    a, b, c = on(0), on(1), on(2)
    records = [(10, 0, pred(a, T0)), (11, 0, pred(b, T0)),                            # singles
               (12, 0, pred(b, T0)), (12, 1, pred(c, T0)), (12, 2, pred(on(1, prefix="q"), T0)),
               (12, 3, pred(on(0, prefix="q"), T0))]                                   # an envelope
    own, forwards = route(records, 0, N)
    assert own == [records[0], records[5]]
    assert forwards == [Forward(11, 1, (0,)), Forward(12, 1, (0, 2)), Forward(12, 2, (1,))]


def test_a_murmur2_producer_keyed_by_prediction_id_forwards_nothing() -> None:
    for partition in range(N):
        records = [(i, 0, outc(p, 1.0)) for i, p in enumerate(f"x{i}" for i in range(300))
                   if partition_of_prediction(p, N) == partition]
        own, forwards = route(records, partition, N)
        assert own == records and forwards == []


@settings(max_examples=100, deadline=None)
@given(topic=st.text(min_size=1, max_size=20), partition=st.integers(0, 1023),
       offset=st.integers(0, 2**62),
       indexes=st.none() | st.lists(st.integers(0, 10**5), min_size=1, max_size=30).map(tuple))
def test_origin_round_trips_through_headers(topic: str, partition: int, offset: int,
                                            indexes: tuple[int, ...] | None) -> None:
    origin = Origin(topic, partition, offset, indexes)
    assert Origin.from_headers(origin.headers()) == origin
    assert Origin.from_headers(dict(origin.headers())) == origin


@pytest.mark.parametrize("headers", [
    None, [], [("source.topic", b"t"), ("source.partition", b"1")],
    [("source.topic", b"t"), ("source.partition", b"x"), ("source.offset", b"3")],
    [("source.topic", b"\xff"), ("source.partition", b"1"), ("source.offset", b"3")],
    [("source.topic", b"t"), ("source.partition", b"-1"), ("source.offset", b"3")],
    [("source.topic", b"t"), ("source.partition", b"1"), ("source.offset", b"3"), ("source.indexes", b"")],
])
def test_a_message_without_a_readable_origin_is_refused(headers: Any) -> None:
    with pytest.raises(BadOrigin):
        Origin.from_headers(headers)


def test_an_envelope_of_forwarded_records_is_the_contracts_envelope() -> None:
    assert envelope_of([{"predictionId": "a"}, {"predictionId": "b"}]) == (
        b'{"records":[{"predictionId":"a"},{"predictionId":"b"}]}')


# ------------------------------------------------------------------ the property
@dataclass
class Partition:
    """One partition's tables (dicts of bytes, like the changelog-backed tables)."""

    number: int
    partials: dict[bytes, bytes] = field(default_factory=dict)
    joins: dict[bytes, bytes] = field(default_factory=dict)
    meta: dict[str, int] = field(default_factory=dict)

    def apply(self, kind: str, slot: str, batch: list[tuple[int, int, Any]], lose: float,
              rng: random.Random) -> None:
        """The agent's fold: join entries written (acknowledged) before the partials; a crash
        loses any subset of the join writes, and then every partial write, or any subset of the
        partial writes."""
        fold = IngestFold(self.number, bucket_ms=DAY, retention_ms=35 * DAY, baseline_for=lambda t, m, v: BASELINE)

        def get_partial(k: bytes) -> PartialState | None:
            raw = self.partials.get(k)
            return PartialState.from_bytes(raw) if raw else None

        def get_join(k: bytes) -> JoinEntry | None:
            raw = self.joins.get(k)
            return JoinEntry.from_bytes(raw) if raw else None

        mark = self.meta.get(slot, -1)
        if kind == FEATURES:
            res = fold.fold_predictions(batch, get_partial, get_join, mark, slot=slot)
        else:
            res = fold.fold_outcomes(batch, get_partial, get_join, mark, 90 * DAY, slot=slot)
        lost_join = False
        for k, v in res.joins.items():
            if rng.random() < lose:
                lost_join = True
            else:
                self.joins[k] = v.to_bytes()
        for k, v in res.partials.items():
            if not (lost_join or rng.random() < lose):
                self.partials[k] = v.to_bytes()
        self.meta[slot] = max(mark, res.max_event_ms)


Message = tuple[int, list[Any]]             # (offset, records: one, or an envelope's)
Forwarded = tuple[int, int, list[tuple[int, Any]]]  # (source partition, source offset, [(index, record)])


def inputs(seed: int, n: int, partitioner: str) -> dict[tuple[str, int], list[Message]]:
    """Predictions (some in envelopes, some sent twice) and outcomes (shuffled: some early),
    partitioned by `partitioner` ("crc32" by the envelope's first predictionId, or "murmur2"
    record by record, as the service would), each topic partition's offsets from 0."""
    rng = random.Random(seed)
    features: list[list[Any]] = []
    outcomes: list[Any] = []
    for i in range(n):
        rec = pred(f"p{i}", T0 + rng.randrange(3 * DAY), x=rng.gauss(0, 1), c=rng.choice(["a", "b", None]),
                   seg=rng.choice([None, "emea"]))
        if features and rng.random() < 0.3:
            features[-1].append(rec)  # into the envelope before
        else:
            features.append([rec])
        if rng.random() < 0.1:
            features.append([rec])    # a producer retry
        if rng.random() < 0.8:
            outcomes.append(outc(f"p{i}", float(rng.random() < 0.5)))
    rng.shuffle(outcomes)
    logs: dict[tuple[str, int], list[Message]] = {(k, p): [] for k in (FEATURES, OUTCOMES) for p in range(N)}

    def put(kind: str, records: list[Any]) -> None:
        if partitioner == "crc32":
            groups = {crc32_partition(records[0].prediction_id.encode(), N): records}
        else:
            groups = {}
            for r in records:
                groups.setdefault(partition_of_prediction(r.prediction_id, N), []).append(r)
        for p, group in groups.items():
            logs[(kind, p)].append((len(logs[(kind, p)]), group))

    for envelope in features:
        put(FEATURES, envelope)
    for o in outcomes:
        put(OUTCOMES, [o])
    return logs


def run(logs: dict[tuple[str, int], list[Message]], *, seed: int | None, batch: int) -> list[Partition]:
    """The service over these logs: each input partition forwards what is not its own and folds
    the rest, each repartition partition folds what it receives under the source's slot; with a
    seed, crash now and then: lose some table writes and the tail of the batch's forwards, and
    resume from an earlier commit (never past the start of the batch: the forwards and the table
    writes are acknowledged before the offsets commit)."""
    rng = random.Random(seed)
    parts = [Partition(p) for p in range(N)]
    repartition: dict[tuple[str, int], list[Forwarded]] = {(k, p): [] for k in (FEATURES, OUTCOMES) for p in range(N)}
    streams = [("in", k, p) for k, p in logs] + [("re", k, p) for k, p in repartition]
    pos = dict.fromkeys(streams, 0)
    for _ in range(50_000):
        waiting = [s for s in streams if pos[s] < len(logs[s[1:]] if s[0] == "in" else repartition[s[1:]])]
        if not waiting:
            break
        stream = rng.choice(waiting)
        where, kind, p = stream
        crash = seed is not None and rng.random() < 0.3
        lose = 0.5 if crash else 0.0
        start = pos[stream]
        if where == "in":
            chunk = logs[(kind, p)][start:start + batch]
            records = [(offset, index, r) for offset, group in chunk for index, r in enumerate(group)]
            own, forwards = route(records, p, N)
            by_offset = dict(chunk)
            sent = forwards[:rng.randrange(len(forwards) + 1)] if crash else forwards
            for f in sent:  # one message per (source message, destination): whole or not at all
                repartition[(kind, f.target)].append((p, f.offset, [(i, by_offset[f.offset][i]) for i in f.indexes]))
            parts[p].apply(kind, kind, own, lose, rng)
        else:
            entries = repartition[(kind, p)][start:start + batch]
            by_source: dict[int, list[tuple[int, int, Any]]] = {}
            for q, offset, forwarded in entries:
                by_source.setdefault(q, []).extend((offset, index, r) for index, r in forwarded)
            for q, records in by_source.items():
                parts[p].apply(kind, forwarded_slot(kind, q), records, lose, rng)
            chunk = entries  # type: ignore[assignment]
        if crash:
            pos[stream] = max(0, start - rng.randrange(0, 2 * batch))
        else:
            pos[stream] = start + len(chunk)
    return parts


def totals(parts: list[Partition]) -> dict[bytes, tuple[Any, Any]]:
    return {k: (PartialState.from_bytes(v).histogram.to_json(), PartialState.from_bytes(v).performance.to_json())
            for part in parts for k, v in part.partials.items()}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 30))
def test_forwarding_with_crashes_equals_murmur2_partitioned_inputs(seed: int, batch: int) -> None:
    direct = run(inputs(seed, 120, "murmur2"), seed=None, batch=batch)
    forwarded = run(inputs(seed, 120, "crc32"), seed=seed, batch=batch)
    assert totals(forwarded) == totals(direct)
    assert sum(PartialState.from_bytes(v).histogram.n for p in direct for v in p.partials.values()) == 120
    # each pair is in its prediction day's partial (and again in its arrival day's, not counted here)
    pairs = sum(PartialState.from_bytes(v).performance.n for p in direct for k, v in p.partials.items()
                if is_partial_key(k))
    assert pairs == sum(1 for r in inputs(seed, 120, "murmur2").values() for _, g in r for x in g
                        if isinstance(x, OutcomeRecord))
    assert all(isinstance(x, InferenceRecord | OutcomeRecord) for r in inputs(seed, 1, "crc32").values()
               for _, g in r for x in g)


def test_too_late_is_decided_where_a_record_arrived_by_every_record_there() -> None:
    """Found by the bad-input scenario: a late record forwarded elsewhere met only the mark of
    the records forwarded with it, and counted. The mark where it arrived moves with every
    record, the forwarded ones too; the rest of the fold sees the same mark."""
    ids = [f"p{i}" for i in range(40)]
    elsewhere = next(i for i in ids if partition_of_prediction(i, 4) != 0)
    here = next(i for i in ids if partition_of_prediction(i, 4) == 0)
    records = [(0, 0, pred(elsewhere, T0 + 40 * DAY)),  # forwarded: still moves the mark
               (1, 0, pred(here, T0)),                  # 40 days older: too late for 35
               (2, 0, pred("late", T0 + 2 * DAY)),
               (3, 0, pred("fine", T0 + 10 * DAY))]
    admitted, rejected, mark = admit_on_arrival(records, -1, 35 * DAY, "older than the retention")
    assert [o for o, _, _ in admitted] == [0, 3]
    assert [(r.offset, r.reason) for r in rejected] == [(1, "too_late"), (2, "too_late")]
    assert mark == T0 + 40 * DAY
    # from a stored mark; an empty batch leaves it
    assert admit_on_arrival([(5, 0, pred(here, T0))], T0 + 40 * DAY, 35 * DAY, "x")[1][0].offset == 5
    assert admit_on_arrival([], T0, DAY, "x") == ([], [], T0)
