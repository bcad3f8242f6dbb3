"""Every type that is stored in a table or sent between the run's agents round-trips exactly
through its codec (hypothesis), found by reflection: a new key or message class in
`tables/keys.py` or `tables/run_messages.py` without a strategy here fails the test."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_monitoring.tables import keys as keys_module
from model_monitoring.tables import run_messages
from model_monitoring.tables.calibration import ReliabilityBins
from model_monitoring.tables.error_sums import ErrorSums
from model_monitoring.tables.evaluation_state import (
    Evaluation,
    PartsGather,
    expired_evaluations,
    load_part,
    merge_segments,
    store_part,
)
from model_monitoring.tables.histogram import FeatureHistogram
from model_monitoring.tables.incidents import Incident, IncidentBook, IncidentKey
from model_monitoring.tables.job_run import COUNT_FIELDS, JobRun
from model_monitoring.tables.join_buffer import JoinEntry, Outcome, Prediction
from model_monitoring.tables.join_log import JoinBatch, entry_of
from model_monitoring.tables.keys import decode_job_runs_key, decode_partials_key
from model_monitoring.tables.label_lag import LagHistogram
from model_monitoring.tables.partial import Cohort, PartialState, forwarded_slot
from tests.support.strategies import performance_sums

SETTINGS = settings(max_examples=60, deadline=None)

# any text, '|' and '%' included: keys escape their fields
TEXT = st.text(min_size=0, max_size=12)
NAME = st.text(min_size=1, max_size=12)
PARTITION = st.integers(0, 255)
MS = st.integers(0, 2**53)
COUNTS = st.fixed_dictionaries({f: st.integers(0, 10**6) for f in COUNT_FIELDS})
SHAPE = {"amount": 5, "industry": 4}


@st.composite
def histograms(draw: st.DrawFn) -> FeatureHistogram:
    names = sorted(draw(st.sets(st.sampled_from(sorted(SHAPE)))))
    return FeatureHistogram(
        counts={n: tuple(draw(st.lists(st.integers(0, 10**6), min_size=SHAPE[n], max_size=SHAPE[n])))
                for n in names},
        type_mismatch={n: draw(st.integers(0, 100)) for n in names},
        n=draw(st.integers(0, 10**6)), fingerprint=draw(st.sampled_from(["", "f" * 16])))




# watermark slots: each input's own log, and the records forwarded from a source partition
SLOTS = st.sampled_from(["f", "o"]) | st.builds(forwarded_slot, st.sampled_from(["f", "o"]), PARTITION)
PROBABILITIES = st.lists(st.floats(0, 1), max_size=6)
RELIABILITY = PROBABILITIES.flatmap(lambda p: st.lists(st.sampled_from([0.0, 1.0]), min_size=len(p),
                                                       max_size=len(p)).map(lambda y: ReliabilityBins().update_many(p, y)))
LAGS = st.lists(st.integers(-10**9, 200 * 86_400_000), max_size=6).map(
    lambda lags: LagHistogram().update_many(lags) if lags else LagHistogram())
COHORTS = st.dictionaries(st.integers(0, 11), st.builds(Cohort, st.integers(0, 10**6), LAGS), max_size=3)
PARTIALS = st.builds(PartialState, histograms(), performance_sums(max_size=8),
                     st.dictionaries(SLOTS, st.integers(-1, 10**9)),
                     st.integers(0, 1000), PROBABILITIES.map(lambda p: ErrorSums().update_many(p)),
                     st.lists(st.integers(0, 10**6), max_size=11).map(tuple), RELIABILITY, LAGS,
                     performance_sums(max_size=4), RELIABILITY, LAGS, COHORTS, st.integers(0, 10**6))
SOURCE = st.tuples(SLOTS, st.integers(0, 10**9), st.integers(0, 1000))
PREDICTIONS = st.builds(Prediction, NAME, NAME, NAME, TEXT, MS, st.floats(0, 1), SOURCE)
OUTCOMES = st.builds(Outcome, NAME, NAME, st.sampled_from([0.0, 1.0, 12.5]), MS, SOURCE)
JOIN_ENTRIES = st.builds(JoinEntry, st.none() | PREDICTIONS, st.none() | OUTCOMES, st.none() | SOURCE)
# a batch of the join log: (join key, entry bytes), each key once
JOIN_BATCHES = st.dictionaries(st.builds(keys_module.JoinKey, PARTITION, TEXT), JOIN_ENTRIES, max_size=6).map(
    lambda d: JoinBatch(tuple(entry_of(k.encode(), e) for k, e in d.items())))
TENANTS = st.none() | st.lists(NAME, max_size=3).map(tuple)
INCIDENT_KEYS = st.builds(IncidentKey, TEXT, st.none() | TEXT, st.sampled_from(["drift", "performance"]), NAME)
INCIDENTS = st.builds(Incident, NAME, TEXT, NAME, st.sampled_from([None, "warning", "critical"]),
                      st.none() | st.floats(0, 10, allow_nan=False), NAME, st.integers(0, 100))
OPEN_INCIDENTS = st.dictionaries(INCIDENT_KEYS, INCIDENTS, max_size=4)
INCIDENT_BOOKS = st.builds(IncidentBook, OPEN_INCIDENTS, st.none() | NAME, st.none() | MS, OPEN_INCIDENTS,
                           st.lists(NAME, max_size=4).map(tuple))
JOB_RUNS = st.builds(
    JobRun, NAME, MS, MS, TENANTS, st.sampled_from(["topic", "cron", "http"]), MS, MS,
    st.integers(1, 64), st.sampled_from(["running", "completed", "failed"]),
    st.lists(st.integers(0, 63), max_size=4, unique=True).map(lambda p: tuple(sorted(p))),
    st.none() | st.integers(0, 10**4), st.integers(0, 10**4), COUNTS, st.none() | MS, st.none() | TEXT)
MODEL_KEY = st.tuples(NAME, NAME).map(":".join)
STATES = st.dictionaries(st.tuples(NAME, TEXT), PARTIALS, max_size=3)
CHUNK_KEYS = st.lists(MODEL_KEY, max_size=3, unique=True).map(lambda k: tuple(sorted(k)))
GATHERS = st.builds(
    PartsGather, TEXT, MS, MS,
    st.dictionaries(PARTITION, st.dictionaries(st.integers(0, 20), CHUNK_KEYS, max_size=3), max_size=3),
    st.dictionaries(PARTITION, st.integers(1, 21), max_size=3),
    st.frozensets(MODEL_KEY, max_size=3), st.frozensets(MODEL_KEY, max_size=3),
    st.frozensets(st.tuples(PARTITION, st.integers(0, 20)), max_size=3), st.none() | st.integers(1, 256))

# class -> (strategy, encode, decode)
Codec = tuple[st.SearchStrategy[Any], Callable[[Any], bytes], Callable[[bytes], Any]]



VALUES: dict[type, Codec] = {
    PartialState: (PARTIALS, PartialState.to_bytes, PartialState.from_bytes),
    JoinEntry: (JOIN_ENTRIES, JoinEntry.to_bytes, JoinEntry.from_bytes),
    JoinBatch: (JOIN_BATCHES, JoinBatch.to_bytes, JoinBatch.from_bytes),
    JobRun: (JOB_RUNS, JobRun.to_bytes, JobRun.from_bytes),
    PartsGather: (GATHERS, PartsGather.to_bytes, PartsGather.from_bytes),
    IncidentBook: (INCIDENT_BOOKS, IncidentBook.to_bytes, IncidentBook.from_bytes),
}

KEY_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    keys_module.PartialKey: st.builds(keys_module.PartialKey, PARTITION, TEXT, TEXT, TEXT, TEXT,
                                      st.integers(0, 10**6)),
    keys_module.MetaKey: st.builds(keys_module.MetaKey, PARTITION),
    keys_module.ArrivalKey: st.builds(keys_module.ArrivalKey, PARTITION, TEXT, TEXT, TEXT, TEXT,
                                      st.integers(0, 10**6)),
    keys_module.JoinKey: st.builds(keys_module.JoinKey, PARTITION, TEXT),
    keys_module.JoinBatchKey: st.builds(keys_module.JoinBatchKey, PARTITION, st.integers(0, 10**15)),
    keys_module.BaselineKey: st.builds(keys_module.BaselineKey, st.none() | NAME.filter(lambda t: ":" not in t and t != "*"),
                                       NAME.filter(lambda t: ":" not in t), TEXT),
    keys_module.RunKey: st.builds(keys_module.RunKey, PARTITION, TEXT),
    keys_module.ReportKey: st.builds(keys_module.ReportKey, PARTITION, TEXT, PARTITION),
    keys_module.EvaluatedKey: st.builds(keys_module.EvaluatedKey, PARTITION, TEXT, MODEL_KEY),
    keys_module.EvaluationKey: st.builds(keys_module.EvaluationKey, PARTITION, TEXT, MODEL_KEY),
    keys_module.EvaluationPartKey: st.builds(keys_module.EvaluationPartKey, PARTITION, TEXT, MODEL_KEY, PARTITION),
    keys_module.GatherKey: st.builds(keys_module.GatherKey, PARTITION, TEXT),
    keys_module.PartsChunkKey: st.builds(keys_module.PartsChunkKey, PARTITION, TEXT, PARTITION, st.integers(0, 10**4)),
    keys_module.IncidentBookKey: st.builds(keys_module.IncidentBookKey, PARTITION, MODEL_KEY),
    keys_module.RunStatusKey: st.builds(keys_module.RunStatusKey, TEXT),
}

KEY_DECODERS: dict[type, Callable[[bytes], Any]] = {
    keys_module.PartialKey: decode_partials_key, keys_module.MetaKey: decode_partials_key,
    keys_module.ArrivalKey: decode_partials_key,
    keys_module.RunKey: decode_job_runs_key, keys_module.ReportKey: decode_job_runs_key,
    keys_module.EvaluatedKey: decode_job_runs_key,
    keys_module.EvaluationKey: keys_module.decode_evaluations_key,
    keys_module.EvaluationPartKey: keys_module.decode_evaluations_key,
    keys_module.GatherKey: keys_module.decode_evaluations_key,
    keys_module.PartsChunkKey: keys_module.decode_evaluations_key,
}

MESSAGE_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    run_messages.StartRun: st.builds(run_messages.StartRun, JOB_RUNS),
    run_messages.PartitionReport: st.builds(run_messages.PartitionReport, TEXT, PARTITION,
                                            st.lists(MODEL_KEY, max_size=4, unique=True).map(lambda k: tuple(sorted(k)))),
    run_messages.KeyEvaluated: st.builds(run_messages.KeyEvaluated, TEXT, MODEL_KEY, COUNTS),
    run_messages.SnapshotRequest: st.builds(run_messages.SnapshotRequest, TEXT, MS, MS, TENANTS),
    run_messages.SnapshotPart: st.builds(run_messages.SnapshotPart.of, TEXT, MODEL_KEY, PARTITION, MS, MS, STATES),
    run_messages.SnapshotParts: st.builds(
        lambda run, source, start, end, parts, max_bytes, pick: (lambda chunks: chunks[pick % len(chunks)])(
            run_messages.SnapshotParts.chunked(run, source, start, end, source + 1 + pick, parts, max_bytes)),
        TEXT, PARTITION, MS, MS, st.dictionaries(MODEL_KEY, STATES, max_size=4),
        st.integers(1, 4000), st.integers(0, 10)),
    run_messages.EvaluateRequest: st.builds(run_messages.EvaluateRequest, TEXT, MODEL_KEY,
                                            st.lists(PARTITION, max_size=4).map(tuple), MS, MS),
    run_messages.EvaluateKeys: st.builds(
        run_messages.EvaluateKeys, TEXT,
        st.lists(st.tuples(MODEL_KEY, st.lists(PARTITION, max_size=4).map(tuple)), max_size=4).map(tuple), MS, MS),
    run_messages.KeysEvaluated: st.builds(run_messages.KeysEvaluated, TEXT,
                                          st.lists(st.tuples(MODEL_KEY, COUNTS), max_size=4).map(tuple)),
}
MESSAGE_DECODERS: dict[type, Callable[[bytes], Any]] = {
    run_messages.StartRun: run_messages.decode_run_message,
    run_messages.PartitionReport: run_messages.decode_run_message,
    run_messages.KeyEvaluated: run_messages.decode_run_message,
    run_messages.SnapshotRequest: run_messages.SnapshotRequest.from_bytes,
    run_messages.SnapshotPart: run_messages.decode_part_message,
    run_messages.SnapshotParts: run_messages.decode_part_message,
    run_messages.EvaluateRequest: run_messages.decode_part_message,
    run_messages.EvaluateKeys: run_messages.decode_part_message,
    run_messages.KeysEvaluated: run_messages.decode_run_message,
}


def _dataclasses_of(module: Any) -> set[type]:
    """The module's public dataclasses (a private base, as keys._DayKey, is never encoded itself)."""
    return {obj for name, obj in inspect.getmembers(module, inspect.isclass)
            if dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_")}


def test_every_key_and_message_class_has_a_strategy() -> None:
    assert _dataclasses_of(keys_module) == set(KEY_STRATEGIES)
    assert _dataclasses_of(run_messages) == set(MESSAGE_STRATEGIES)


@SETTINGS
@pytest.mark.parametrize("cls", sorted(VALUES, key=lambda c: c.__name__))
@given(data=st.data())
def test_table_values_round_trip(cls: type, data: st.DataObject) -> None:
    strategy, encode, decode = VALUES[cls]
    value = data.draw(strategy)
    assert decode(encode(value)) == value
    assert encode(decode(encode(value))) == encode(value)


@SETTINGS
@pytest.mark.parametrize("cls", sorted(KEY_STRATEGIES, key=lambda c: c.__name__))
@given(data=st.data())
def test_table_keys_round_trip_and_start_with_their_partition(cls: type, data: st.DataObject) -> None:
    key = data.draw(KEY_STRATEGIES[cls])
    decode = KEY_DECODERS.get(cls) or cls.decode
    assert decode(key.encode()) == key
    assert keys_module.partition_of(key.encode()) == getattr(key, "partition", 0)


@SETTINGS
@given(data=st.data())
def test_job_runs_keys_of_different_kinds_never_collide(data: st.DataObject) -> None:
    run, report, done = (data.draw(KEY_STRATEGIES[c]) for c in
                         (keys_module.RunKey, keys_module.ReportKey, keys_module.EvaluatedKey))
    assert len({run.encode(), report.encode(), done.encode()}) == 3


@SETTINGS
@pytest.mark.parametrize("cls", sorted(MESSAGE_STRATEGIES, key=lambda c: c.__name__))
@given(data=st.data())
def test_internal_messages_round_trip(cls: type, data: st.DataObject) -> None:
    message = data.draw(MESSAGE_STRATEGIES[cls])
    decoded = MESSAGE_DECODERS[cls](message.to_bytes())
    assert decoded == message and decoded.to_bytes() == message.to_bytes()


@SETTINGS
@given(st.data())
def test_evaluations_round_trip_through_every_state(data: st.DataObject) -> None:
    ev = Evaluation(data.draw(TEXT), data.draw(MODEL_KEY), data.draw(MS), data.draw(MS))
    kept: dict[int, bytes] = {}
    sent: dict[int, Any] = {}
    for partition in data.draw(st.lists(PARTITION, max_size=3, unique=True)):
        sent[partition] = data.draw(STATES)
        kept[partition] = store_part(sent[partition])
        ev = ev.receive(partition)
        assert Evaluation.from_bytes(ev.to_bytes()) == ev
        assert load_part(kept[partition]) == sent[partition]
    ev = ev.expect(tuple(sorted(ev.received)))
    assert Evaluation.from_bytes(ev.to_bytes()) == ev
    assert ev.ready() and ev.merged(kept) == merge_segments(sent[p] for p in sorted(sent))
    ev = ev.publishing(data.draw(MS))
    assert Evaluation.from_bytes(ev.to_bytes()) == ev
    ev = ev.finished(data.draw(COUNTS))
    assert Evaluation.from_bytes(ev.to_bytes()) == ev


def test_unknown_internal_messages_are_refused() -> None:
    with pytest.raises(run_messages.MessageError):
        run_messages.decode_run_message(b'{"type": "part"}')
    with pytest.raises(run_messages.MessageError):
        run_messages.decode_part_message(b'{"type": "start"}')
    with pytest.raises(run_messages.MessageError):
        run_messages.decode_part_message(b"[1, 2]")


def test_parts_and_evaluations_of_the_previous_release_still_decode() -> None:
    """A run in flight during an upgrade: a part message with its states as a list, and an
    evaluation that kept its parts inline, read by this release give the same state."""
    states = {("3", "emea"): PartialState(), ("3", ""): PartialState()}
    rows = [[v, s, st.to_json()] for (v, s), st in sorted(states.items())]
    old_part = orjson.dumps({"type": "part", "jobRunId": "r", "key": "acme:churn", "partition": 2,
                             "windowStartMs": 0, "windowEndMs": 1, "states": rows})
    decoded = run_messages.decode_part_message(old_part)
    assert decoded == run_messages.SnapshotPart.of("r", "acme:churn", 2, 0, 1, states)
    old_evaluation = orjson.dumps({"job_run_id": "r", "model_key": "acme:churn", "window_start_ms": 0,
                                   "window_end_ms": 1, "parts": {"2": rows}, "expected": None,
                                   "done": False, "counts": {}, "publishing_since_ms": None})
    ev = Evaluation.from_bytes(old_evaluation).receive(5)
    assert ev.has_part(2) and ev.received == (5,)
    ev = ev.expect((2, 5))
    assert ev.ready() and ev.merged({5: store_part(states)}) == merge_segments([states, states])


def test_expired_evaluations_take_their_kept_parts_and_orphans_with_them() -> None:
    def part_key(run: str, source: int) -> bytes:
        return keys_module.EvaluationPartKey(0, run, "acme:churn", source).encode()

    def header(run: str, ev: Evaluation) -> tuple[bytes, bytes]:
        return keys_module.EvaluationKey(0, run, "acme:churn").encode(), ev.to_bytes()

    waiting = Evaluation("new", "acme:churn", 0, 10_000).receive(1)
    done = Evaluation("done", "acme:churn", 0, 10_000).receive(1).finished({})
    old = Evaluation("old", "acme:churn", 0, 10).receive(1)
    items = [header("new", waiting), (part_key("new", 1), b"[]"), (part_key("new", 2), b"[]"),
             header("done", done), (part_key("done", 1), b"[]"), header("old", old),
             (part_key("old", 1), b"[]"), (part_key("gone", 1), b"[]")]
    assert set(expired_evaluations(items, before_ms=100)) == {
        part_key("new", 2), part_key("done", 1), header("old", old)[0], part_key("old", 1),
        part_key("gone", 1)}


@SETTINGS
@given(st.data())
def test_parts_chunks_hold_every_part_once_within_their_size(data: st.DataObject) -> None:
    """`SnapshotParts.chunked`: every key's part in exactly one chunk, in key order, chunks
    numbered 0..n-1 of n, none over the limit unless it holds a single larger part."""
    parts = data.draw(st.dictionaries(MODEL_KEY, STATES, max_size=6))
    max_bytes = data.draw(st.integers(1, 6000))
    chunks = run_messages.SnapshotParts.chunked("r", 3, 0, 1, 8, parts, max_bytes)
    assert [c.chunk for c in chunks] == list(range(len(chunks)))
    assert all(c.chunks == len(chunks) and c.sources == 8 for c in chunks)
    flat = [part for c in chunks for part in c.parts]
    assert flat == [(key, store_part(parts[key])) for key in sorted(parts)]
    assert all(len(c.parts) == 1 or sum(len(b) for _, b in c.parts) <= max_bytes for c in chunks)
    assert all(c.parts for c in chunks) or (not parts and len(chunks) == 1)  # none: one empty chunk


@SETTINGS
@given(st.data())
def test_a_gather_knows_its_complete_sources_and_drops_a_chunk_once_its_keys_are_done(
        data: st.DataObject) -> None:
    n_sources = data.draw(st.integers(1, 4))
    sources = {s: data.draw(st.lists(CHUNK_KEYS, min_size=1, max_size=3)) for s in range(n_sources)}
    deliveries = [(s, i, len(chunks), keys) for s, chunks in sources.items() for i, keys in enumerate(chunks)]
    order = data.draw(st.permutations(deliveries))
    gather = PartsGather("r", 0, 1)
    for n, (source, index, count, keys) in enumerate(order):
        assert not gather.all_in()
        gather = gather.receive(source, index, count, keys, n_sources)
        gather = gather.receive(source, index, count, (), n_sources)  # a redelivery changes nothing
        assert PartsGather.from_bytes(gather.to_bytes()) == gather
        seen = {(s, i) for s, i, _, _ in order[:n + 1]}
        assert gather.complete() == {s for s, chunks in sources.items()
                                     if all((s, i) in seen for i in range(len(chunks)))}
    assert gather.all_in()
    for source, chunks in sources.items():
        for keys in chunks:
            for key in keys:
                assert gather.chunk_of(source, key) is not None
    assert gather.keys() == {key: tuple(s for s in sorted(sources) if any(key in keys for keys in sources[s]))
                             for key in sorted({k for chunks in sources.values() for keys in chunks for k in keys})}
    every_key = sorted({k for chunks in sources.values() for keys in chunks for k in keys})
    finished = data.draw(st.lists(st.sampled_from(every_key), unique=True)) if every_key else []
    gather, drop = gather.finish(finished)
    assert set(drop) == {(s, i) for s, chunks in sources.items() for i, keys in enumerate(chunks)
                         if set(keys) <= set(finished)}
    assert gather.finish(finished)[1] == []  # a chunk is dropped once


def test_expired_evaluations_take_dropped_and_orphaned_chunks_and_old_gathers() -> None:
    def chunk(run: str, index: int) -> bytes:
        return keys_module.PartsChunkKey(0, run, 1, index).encode()

    def gather_entry(run: str, gather: PartsGather) -> tuple[bytes, bytes]:
        return keys_module.GatherKey(0, run).encode(), gather.to_bytes()

    live, _ = (PartsGather("new", 0, 10_000).receive(1, 0, 2, ["acme:a"]).receive(1, 1, 2, ["acme:b"])
               .finish(["acme:a"]))
    old = PartsGather("old", 0, 10).receive(1, 0, 1, ["acme:a"])
    items = [gather_entry("new", live), (chunk("new", 0), b"{}"), (chunk("new", 1), b"{}"),
             gather_entry("old", old), (chunk("old", 0), b"{}"), (chunk("gone", 0), b"{}")]
    assert set(expired_evaluations(items, before_ms=100)) == {
        chunk("new", 0), gather_entry("old", old)[0], chunk("old", 0), chunk("gone", 0)}


@given(PARTITION, TEXT | st.sampled_from(["a|b", "50%", "%7C|%25", "|", "%"]))
def test_join_key_bytes_is_the_general_encoding(partition: int, prediction_id: str) -> None:
    """The ingest path's join key, built without a JoinKey, is the table key's encoding."""
    assert keys_module.join_key_bytes(partition, prediction_id) == keys_module._encode(partition, prediction_id)
    assert keys_module.JoinKey.decode(keys_module.join_key_bytes(partition, prediction_id)) == \
        keys_module.JoinKey(partition, prediction_id)
