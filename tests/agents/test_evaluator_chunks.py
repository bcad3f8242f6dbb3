"""The evaluator's parts in chunks (`SnapshotParts`: one message per source and evaluator
partition): once every chunk of every source partition is in, the evaluator evaluates every key
in them, without the tracker's request, exactly as from one message per key; a redelivered
chunk is kept once (and repeats the reports); an older release's request that comes before the
chunks waits for them; a chunk goes once every key in it is done."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from model_monitoring.agents import snapshot
from model_monitoring.commands.simulate import DAY_MS
from model_monitoring.tables.evaluation_state import Evaluation, PartsGather
from model_monitoring.tables.keys import EvaluationKey, GatherKey, PartsChunkKey
from model_monitoring.tables.partial import PartialState
from model_monitoring.tables.run_messages import EvaluateKeys, SnapshotPart, SnapshotParts
from tests.support.evaluator import END, evaluator_monitor, part

START = END - 7 * DAY_MS
KEYS = ("acme:churn", "globex:churn", "initech:churn")


@pytest.fixture
def monitor() -> Any:
    return evaluator_monitor()


def parts_by_source(monitor: Any) -> dict[int, dict[str, dict[tuple[str, str], PartialState]]]:
    """Partition 0 holds a part of every key, partition 1 of two of them (the same drifting
    week: each key's merged state is twice or once that)."""
    week = part(monitor)
    return {0: {key: week for key in KEYS}, 1: {key: week for key in KEYS[:2]}}


def event(message: Any, partition: int = 0) -> Any:
    return SimpleNamespace(message=SimpleNamespace(value=message.to_bytes(), partition=partition))


def request(sources: dict[int, dict[str, Any]]) -> EvaluateKeys:
    return EvaluateKeys("run-1", tuple((key, tuple(s for s in sorted(sources) if key in sources[s]))
                                       for key in KEYS), START, END)


def chunks(sources: dict[int, dict[str, Any]], max_bytes: int) -> list[SnapshotParts]:
    return [c for source, keys in sorted(sources.items())
            for c in SnapshotParts.chunked("run-1", source, START, END, len(sources), keys, max_bytes)]


def published(monitor: Any) -> dict[str, list[dict[str, Any]]]:
    """What went out, without the times of the attempt (detectedAt, openedAt, ...)."""
    return {kind: [{k: v for k, v in doc.items() if not k.endswith("At")} for doc in monitor.recorder.sent(kind)]
            for kind in ("snapshot", "drift", "degraded", "resolved", "recovered")}


async def test_chunked_parts_evaluate_as_one_part_per_key_and_go_when_done(monitor: Any) -> None:
    sources = parts_by_source(monitor)
    sent = chunks(sources, max_bytes=1)  # one key per chunk: partition 0 sends 3, partition 1 two
    assert [(c.partition, c.chunk, c.chunks) for c in sent] == [(0, 0, 3), (0, 1, 3), (0, 2, 3), (1, 0, 2), (1, 1, 2)]
    evaluator = snapshot.Evaluator(monitor)
    for message in (*sent[:-1], sent[1], sent[3]):  # two redelivered
        await evaluator.handle(event(message))
    gather = PartsGather.from_bytes(monitor.tables.evaluations[GatherKey(0, "run-1").encode()])
    assert gather.complete() == {0} and gather.chunks[0] == {0: (KEYS[0],), 1: (KEYS[1],), 2: (KEYS[2],)}
    assert not monitor.recorder.calls  # nothing before every chunk of every partition is in
    await evaluator.handle(event(sent[-1]))  # the last: every key evaluated, one flush, one report
    assert [c for c in monitor.recorder.calls if c[0] == "flush"] == [("flush", None)]
    (report,) = monitor.recorder.sent("runs")
    assert [k for k, _ in report["results"]] == list(KEYS)
    assert all(Evaluation.from_bytes(monitor.tables.evaluations[EvaluationKey(0, "run-1", k).encode()]).done
               for k in KEYS)
    assert not [k for k in monitor.tables.evaluations if b"|~|chunk|" in k]  # every chunk went
    gather = PartsGather.from_bytes(monitor.tables.evaluations[GatherKey(0, "run-1").encode()])
    assert gather.done == set(KEYS) and len(gather.dropped) == 5 and not gather.waiting
    by_chunks = published(monitor)
    assert by_chunks["snapshot"] and by_chunks["drift"], "the test data must hold an alert"
    # the tracker's request, and a chunk redelivered after the evaluation: the reports again, no event
    await evaluator.handle(event(request(sources)))
    await evaluator.handle(event(sent[0]))
    assert published(monitor) == by_chunks
    assert [[k for k, _ in r["results"]] for r in monitor.recorder.sent("runs")] == [list(KEYS)] * 3

    # the same parts, one message per key, to a fresh evaluator: the same events
    other = evaluator_monitor()
    per_key = snapshot.Evaluator(other)
    for source, keys in sorted(sources.items()):
        for key, states in sorted(keys.items()):
            await per_key.handle(event(SnapshotPart.of("run-1", key, source, START, END, states)))
    await per_key.handle(event(request(sources)))
    assert published(other) == by_chunks


async def test_a_request_before_the_chunks_waits_for_every_chunk_of_every_partition(monitor: Any) -> None:
    sources = parts_by_source(monitor)
    sent = chunks(sources, max_bytes=1)
    evaluator = snapshot.Evaluator(monitor)
    await evaluator.handle(event(request(sources)))
    assert not monitor.recorder.calls
    gather = PartsGather.from_bytes(monitor.tables.evaluations[GatherKey(0, "run-1").encode()])
    assert gather.waiting == set(KEYS)
    for message in sent[:-1]:  # partition 1's second chunk not yet: only initech:churn is ready
        await evaluator.handle(event(message))
    assert [[k for k, _ in r["results"]] for r in monitor.recorder.sent("runs")] == [[KEYS[2]]]
    await evaluator.handle(event(sent[-1]))  # every chunk in: the other two, and initech's report again
    assert [sorted(k for k, _ in r["results"]) for r in monitor.recorder.sent("runs")] == [[KEYS[2]], sorted(KEYS)]
    assert [d["tenantId"] for d in monitor.recorder.sent("snapshot") if d["segment"] is None] == [
        "initech", "acme", "globex"]  # each key evaluated once
    assert not [k for k in monitor.tables.evaluations if b"|~|chunk|" in k]
    # a repeated request repeats the report, publishes nothing
    before = len(monitor.recorder.sent("snapshot"))
    await evaluator.handle(event(request(sources)))
    assert len(monitor.recorder.sent("snapshot")) == before
    assert [k for k, _ in monitor.recorder.sent("runs")[-1]["results"]] == list(KEYS)


async def test_a_chunk_missing_when_its_key_is_evaluated_is_an_error_not_a_smaller_sum(monitor: Any) -> None:
    sources = parts_by_source(monitor)
    evaluator = snapshot.Evaluator(monitor)
    first, second = chunks(sources, max_bytes=10**9)
    await evaluator.handle(event(second))
    monitor.tables.evaluations.pop(PartsChunkKey(0, "run-1", 1, 0).encode())
    with pytest.raises(RuntimeError, match="in no chunk kept"):
        await evaluator.handle(event(first))


async def test_a_pass_over_the_keys_reads_each_baseline_once(monitor: Any) -> None:
    """Each read of the baselines table copies the whole stored baseline out of the store: a pass
    over a batch of keys (merge, the feature checks ahead, the evaluations) reads each
    (tenant, model, version)'s once (`BaselineCache.once`), not once per use per key."""
    sources = parts_by_source(monitor)
    sent = chunks(sources, max_bytes=1 << 20)
    evaluator = snapshot.Evaluator(monitor)
    stored = monitor.stored_baselines
    for message in sent:
        await evaluator.handle(event(message))
    assert {d["tenantId"] for d in monitor.recorder.sent("snapshot")} == {"acme", "globex", "initech"}
    # three tenants, one version each: the tenant's own key (absent), then the `*` one
    assert stored.reads == 2 * len(KEYS)
