"""Agents under `agent.test_context()` with the memory store: the real ingest agent folds a
batch into its tables; a bad record in an envelope does not stop the good ones and goes to the
dead-letter topic with its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from model_monitoring.agents.ingest import IngestShell
from model_monitoring.agents.service import build_app
from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import TOPIC_DEFAULTS, read_topic
from model_monitoring.commands.simulate import reference_records
from model_monitoring.schemas.models import InferenceRecord
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.app import Monitor
from model_monitoring.streams.settings import load_settings
from model_monitoring.tables.baseline_build import build_baseline
from model_monitoring.tables.join_log import latest_entries
from model_monitoring.tables.keys import BaselineKey, PartialKey, is_partial_key
from model_monitoring.tables.partial import PartialState
from tests.support.waiting import until

UNREACHABLE = "127.0.0.1:1"  # for a test that must not reach any broker


def make_monitor(tmp_path: Path, unique: str, bootstrap: str) -> Monitor:
    # every topic under the test's own prefix: the session broker's default-named topics keep
    # the partition count the other tests create them with
    topics = {f"MODEL_MONITORING_{name.upper()}_TOPIC": f"{unique}.{default}"
              for name, default in TOPIC_DEFAULTS.items()}
    s = load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MODEL_MONITORING_APP_ID": unique, **topics,
                       "MODEL_MONITORING_STORE": "memory", "MODEL_MONITORING_AUTH_DISABLED": "true",
                       "MODEL_MONITORING_DATA_DIR": str(tmp_path), "MODEL_MONITORING_PARTITIONS": "2",
                       "MODEL_MONITORING_BATCH_SIZE": "3", "MODEL_MONITORING_CRON_ENABLED": "false"})
    m = build_app(s)
    m.app.finalize()
    m.app.conf.store = "memory://"
    m.app.flow_control.resume()
    return m


@pytest.fixture
async def monitor(tmp_path: Path, broker: Broker, unique: str) -> Monitor:
    """The agent runs on an in-memory channel; its table changelog and DLQ sends go to the
    session's embedded broker (the real producer, nothing mocked)."""
    m = make_monitor(tmp_path, unique, broker.bootstrap)
    await ensure_topics(m.settings)
    return m


def record(i: int) -> dict[str, Any]:
    rec = reference_records("churn", n=5, seed=i)[i % 5]
    rec.pop("outcome")
    return dict(rec, predictionId=f"p{i}", tenantId="acme", timestamp="2026-11-20T10:00:00Z",
                segment="emea")


def join_entries(monitor: Monitor) -> dict[bytes, bytes]:
    """The join entries the join log holds (one per predictionId), as a recovery would read them."""
    return latest_entries(dict(monitor.tables.join_log.data.items()))


def partials(monitor: Monitor) -> dict[PartialKey, PartialState]:
    return {PartialKey.decode(k): PartialState.from_bytes(v) for k, v in monitor.tables.partials.data.items()
            if is_partial_key(k)}


def dead_lettered(monitor: Monitor, reason: str | None = None) -> float:
    """What the DLQ counter says was dead-lettered (for `reason`, or for any)."""
    return sum(sample.value for metric in monitor.metrics.registry.collect() for sample in metric.samples
               if sample.name == "model_monitoring_dlq_messages_total"
               and reason in (None, sample.labels["reason"]))


@pytest.mark.integration
async def test_ingest_agent_counts_a_batch(monitor: Monitor, broker: Broker) -> None:
    s = monitor.settings
    baseline = build_baseline(reference_records("churn", n=500, seed=1), model_id="churn",
                              model_version="3", tenant_id=None, task="classification")
    monitor.tables.baselines.data[BaselineKey(None, "churn", "3").encode()] = orjson.dumps(baseline.to_dict())
    agent = monitor.app.agents["ingest-features"]
    await monitor.app.producer.start()
    try:
        async with agent.test_context() as ctx:
            for i in range(3):
                await ctx.put(key=f"p{i}".encode(), value=orjson.dumps(record(i)), wait=False)
            await ctx.put(key=b"p3", value=orjson.dumps({"records": [record(3), record(4)]}), wait=False)
            await ctx.put(key=b"p5", value=orjson.dumps({"records": [record(5), {"bad": 1}]}), wait=False)
            await until(lambda: sum(p.histogram.n for p in partials(monitor).values()) == 6
                        and dead_lettered(monitor, "schema") == 1, 10,
                        failure=lambda: f"partials {partials(monitor)}")
    finally:
        await monitor.app.producer.stop()  # flushes the dead letter
    # five good singles/envelope records + the good half of the mixed envelope, in one partial
    counted = partials(monitor)
    assert {(k.tenant_id, k.model_id, k.model_version, k.segment) for k in counted} == {("acme", "churn", "3", "emea")}
    assert sum(p.histogram.n for p in counted.values()) == 6
    assert len(join_entries(monitor)) == 6

    # the bad half of the mixed envelope: its own bytes, the message's key, and why
    [letter] = await read_topic(broker.bootstrap, s.dlq_topic(s.features_topic), timeout=30, min_messages=1)
    assert (letter.key, letter.value) == (b"p5", orjson.dumps({"bad": 1}))
    assert dict(letter.headers) == {
        "error": b"schema", "detail": b"predictionId: is required", "source.topic": s.features_topic.encode(),
        "source.partition": b"0", "source.offset": b"4", "source.index": b"1"}
    assert dead_lettered(monitor) == dead_lettered(monitor, "schema") == 1


async def test_regression_producer_failure_is_not_dead_lettered(tmp_path: Path, unique: str) -> None:
    """Found by this tier: with the producer down, the record-by-record fallback sent every good
    record to the DLQ as `internal_error`. A broker failure is not a record defect: it must
    propagate (the worker restarts and the batch is redelivered), and no record is rejected."""
    monitor = make_monitor(tmp_path, unique, UNREACHABLE)  # the producer is never started
    shell = IngestShell(monitor)
    records = [(0, 0, InferenceRecord.from_dict(record(0))), (1, 0, InferenceRecord.from_dict(record(1)))]
    with pytest.raises(RuntimeError, match="Producer not Running"):
        await shell.fold(0, "features", records)
    assert dead_lettered(monitor) == 0


def sample(monitor: Monitor, name: str, **labels: str) -> float:
    value = monitor.metrics.registry.get_sample_value(name, labels)
    return value if value is not None else 0.0


@pytest.mark.integration
async def test_records_of_another_partition_are_forwarded_counted_and_folded_once(
        monitor: Monitor, broker: Broker) -> None:
    """On partition 0 of 2: the records whose predictionId hashes (murmur2) to partition 1 go to
    partition 1 of the repartition topic with their origin, are counted in
    `model_monitoring_mispartitioned_records_total`, and are not folded here; the forwarded
    agent folds them there, and the same forwards delivered again (a source partition replayed
    after a crash) count nothing more."""
    s = monitor.settings
    baseline = build_baseline(reference_records("churn", n=500, seed=1), model_id="churn",
                              model_version="3", tenant_id=None, task="classification")
    monitor.tables.baselines.data[BaselineKey(None, "churn", "3").encode()] = orjson.dumps(baseline.to_dict())

    def rec(i: int, pid: str) -> dict[str, Any]:  # q0 q1 hash to partition 0, q2 q4 q6 to 1
        return dict(record(i), predictionId=pid)

    mispartitioned = "model_monitoring_mispartitioned_records_total"
    assert sample(monitor, mispartitioned, topic=s.features_topic) == 0  # exported from the start
    await monitor.app.producer.start()
    try:
        async with monitor.app.agents["ingest-features"].test_context() as ctx:
            await ctx.put(key=b"q2", value=orjson.dumps(rec(0, "q2")), partition=0, wait=False)
            await ctx.put(key=b"q0", value=orjson.dumps({"records": [rec(1, "q0"), rec(2, "q4"), rec(3, "q6")]}),
                          partition=0, wait=False)
            await ctx.put(key=b"q1", value=orjson.dumps(rec(4, "q1")), partition=0, wait=False)
            # the chunk is done once it is counted too: folded is not the end of it (on Kafka, the
            # count came after the test context had stopped the agent: 0 == 5)
            consumed = "model_monitoring_records_consumed_total"
            await until(lambda: sum(p.histogram.n for p in partials(monitor).values()) == 2
                        and sample(monitor, consumed, topic=s.features_topic) == 5, 10,
                        failure=lambda: f"partials {partials(monitor)}, "
                                        f"consumed {sample(monitor, consumed, topic=s.features_topic)}")
        assert sample(monitor, mispartitioned, topic=s.features_topic) == 3
        assert sample(monitor, mispartitioned, topic=s.outcomes_topic) == 0
        assert sample(monitor, "model_monitoring_records_consumed_total", topic=s.features_topic) == 5
        forwarded = await read_topic(broker.bootstrap, s.repartition_topic(s.features_topic), timeout=30,
                                     min_messages=2)
        assert [(m.partition, m.key, dict(m.headers)) for m in forwarded] == [
            (1, b"q2", {"source.topic": s.features_topic.encode(), "source.partition": b"0",
                        "source.offset": b"0"}),
            (1, b"q0", {"source.topic": s.features_topic.encode(), "source.partition": b"0",
                        "source.offset": b"1", "source.indexes": b"1,2"})]
        assert forwarded[0].value == orjson.dumps(rec(0, "q2"))
        assert [r["predictionId"] for r in orjson.loads(forwarded[1].value)["records"]] == ["q4", "q6"]

        async with monitor.app.agents["ingest-forwarded-features"].test_context() as ctx:
            for m in forwarded + forwarded:  # the second time: the source replayed after a crash
                await ctx.put(key=m.key, value=m.value, headers=list(m.headers), partition=1, wait=False)
            await until(lambda: sample(monitor, "model_monitoring_ingest_events_total",
                                       kind="redelivered_skipped") == 3, 10,
                        failure=lambda: f"partials {partials(monitor)}")
    finally:
        await monitor.app.producer.stop()
    assert sum(p.histogram.n for p in partials(monitor).values()) == 5
    assert len(join_entries(monitor)) == 5
    assert sample(monitor, "model_monitoring_ingest_events_total", kind="records") == 5
    assert sample(monitor, "model_monitoring_records_consumed_total", topic=s.features_topic) == 5
    assert dead_lettered(monitor) == 0


@pytest.mark.integration
async def test_a_forwarded_batch_folded_in_one_write_equals_one_fold_per_source(
        tmp_path: Path, broker: Broker, unique: str) -> None:
    """`fold_logs` (each source partition's forwarded records folded over what the previous
    left, written once) leaves the tables exactly as one `fold` and one write per source did:
    partials, join entries, the detectors' books and the marks — with records of several days
    and minutes, a predictionId forwarded from two sources (a duplicate), and a source's records
    delivered again (skipped)."""
    from model_monitoring.tables.partial import FEATURES, forwarded_slot

    baseline = build_baseline(reference_records("churn", n=500, seed=1), model_id="churn",
                              model_version="3", tenant_id=None, task="classification")
    day_ms, minute_ms = 86_400_000, 60_000
    start = 1_795_000_000_000

    def rec(i: int, pid: str, at: int) -> InferenceRecord:
        return InferenceRecord.from_dict(dict(record(i), predictionId=pid, timestamp=at))

    logs = [
        (forwarded_slot(FEATURES, 0), [(o, 0, rec(o, f"a{o}", start + o * minute_ms)) for o in range(40)], -1),
        (forwarded_slot(FEATURES, 2), [(o, i, rec(o + i, f"b{o}-{i}", start + day_ms + (o + i) * minute_ms))
                                       for o in range(20) for i in range(3)]
         + [(20, 0, rec(1, "a3", start + 2 * minute_ms))], -1),  # a3 again, from another source
        (forwarded_slot(FEATURES, 3), [(o, 0, rec(o, f"c{o}", start + 2 * day_ms + o * 7 * minute_ms))
                                       for o in range(30)], -1),
    ]
    logs.append((logs[0][0], logs[0][1][:10], -1))  # source 0's first records delivered again

    async def tables_after(name: str, one_write: bool) -> tuple[Any, ...]:
        monitor = make_monitor(tmp_path / name, f"{unique}{name}", broker.bootstrap)
        await ensure_topics(monitor.settings)
        monitor.tables.baselines.data[BaselineKey(None, "churn", "3").encode()] = orjson.dumps(baseline.to_dict())
        shell = IngestShell(monitor)
        await monitor.app.producer.start()
        try:
            if one_write:
                folded = await shell.fold_logs(1, "features", logs)
            else:
                folded = [await shell.fold(1, "features", records, slot, mark) for slot, records, mark in logs]
        finally:
            await monitor.app.producer.stop()
        books = monitor.tables.detect_buckets
        return (dict(monitor.tables.partials.data.items()), join_entries(monitor),
                dict(books.data.items()) if books is not None else None,
                [(dict(r.counts), rejected) for r, rejected in folded])

    separately, together = await tables_after("a", False), await tables_after("b", True)
    assert together == separately
    partial_values, joins, books, counts = together
    assert sum(PartialState.from_bytes(v).histogram.n for k, v in partial_values.items() if is_partial_key(k)) == 130
    assert len(joins) == 130 and books
    assert counts[1][0]["duplicate_predictions"] == 1 and counts[3][0]["redelivered_skipped"] == 10
