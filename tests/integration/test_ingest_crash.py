"""Invariant 1 on a real broker: a worker killed with SIGKILL in the middle of ingesting and
restarted ends with exactly the state of one offline pass over the same log; every malformed
message is in the DLQ. At least once (the default) on every broker; exactly once (Kafka
transactions, MODEL_MONITORING_PROCESSING_GUARANTEE) on a broker that has them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import WorkerProcess, produce, read_topic, service_env
from model_monitoring.commands.simulate import Scenario, StreamConfig, generate
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import load_settings
from tests.support.baselines import baseline_message, build_baselines
from tests.support.oracle import changelog_table, dlq_positions, offline_fold, stream_state
from tests.support.waiting import until_consumed, wait_until

pytestmark = pytest.mark.integration


def test_sigkill_mid_ingest_equals_offline_fold(broker: Broker, unique: str,
                                                tmp_path: Path) -> None:
    crash_and_compare(broker, unique, tmp_path, "at_least_once")


def test_sigkill_mid_ingest_equals_offline_fold_exactly_once(broker: Broker, unique: str,
                                                             tmp_path: Path) -> None:
    if broker.engine != "kafka":
        pytest.skip(f"exactly_once needs transactions; {broker.engine} has none (MM_TEST_BROKER=kafka)")
    crash_and_compare(broker, unique, tmp_path, "exactly_once")


def crash_and_compare(broker: Broker, unique: str, tmp_path: Path, guarantee: str) -> None:
    env = service_env(broker, tmp_path / "data", app_id=f"{unique}-mm",
                      topic_prefix=f"{unique}.", extra={"MODEL_MONITORING_PARTITIONS": "4",
                                                        "MODEL_MONITORING_BATCH_SIZE": "500",
                                                        "MODEL_MONITORING_PROCESSING_GUARANTEE": guarantee})
    settings = load_settings(env)
    asyncio.run(ensure_topics(settings))
    baselines = build_baselines()
    cfg = StreamConfig(events_per_key=3500, seed=5, scenario=Scenario(
        duplicate_rate=0.03, early_outcome_rate=0.05, malformed_rate=0.01))
    messages = list(generate(cfg))
    n_features = sum(1 for m in messages if m.kind == "features" and not m.key.startswith(b"bad-"))
    assert n_features >= 20_000

    asyncio.run(produce(broker.bootstrap, [(settings.baselines_topic, *baseline_message(b))
                                           for b in baselines.values()]))
    worker = WorkerProcess(env, tmp_path / "worker-1.log").start()
    try:
        worker.wait_ready()
        wait_until(lambda: worker.metric("model_monitoring_records_consumed_total",
                                         topic=settings.baselines_topic) >= 2, 60, failure=worker.log_tail)
        topic_of = {"features": settings.features_topic, "outcomes": settings.outcomes_topic}
        asyncio.run(produce(broker.bootstrap, [(topic_of[m.kind], m.key, m.value) for m in messages]))
        # kill in the middle: some but not all of the records are in
        wait_until(lambda: worker.metric("model_monitoring_records_consumed_total",
                                         topic=settings.features_topic) >= 6000, 120, every=0.1,
                   failure=worker.log_tail)
        consumed_at_kill = worker.metric("model_monitoring_records_consumed_total",
                                         topic=settings.features_topic)
        worker.kill()
        assert consumed_at_kill < n_features * 1.02
    finally:
        worker.kill()

    restarted = WorkerProcess(env, tmp_path / "worker-2.log").start()
    try:
        restarted.wait_ready()
        # every input committed, so every table write it made was flushed to the changelog
        asyncio.run(until_consumed(broker.bootstrap, settings.app_id,
                                   [settings.features_topic, settings.outcomes_topic], 240,
                                   failure=restarted.log_tail))
    finally:
        restarted.stop()
    # the worker is gone: the changelog read to its end offset is final (with transactions, what
    # was committed: the killed worker's open transaction was aborted when the restart fenced it)
    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    changelog = asyncio.run(changelog_table(broker.bootstrap, f"{settings.app_id}-partials-changelog",
                                            isolation_level=isolation))

    expected = offline_fold(messages, baselines)
    actual = stream_state(changelog)
    assert set(actual.states) == set(expected.states)
    mismatched = [k for k in expected.states
                  if actual.comparable()[k] != expected.comparable()[k]]
    detail = [(k, actual.states[k].histogram.n, expected.states[k].histogram.n,
               actual.states[k].performance.n, expected.states[k].performance.n) for k in mismatched[:8]]
    assert not mismatched, f"{len(mismatched)} partials differ (key, n, n expected, outcomes, outcomes expected): {detail}"
    total = sum(s.histogram.n for s in actual.states.values())
    assert total == sum(s.histogram.n for s in expected.states.values())
    matched = sum(s.performance.n for s in actual.states.values())
    assert matched == sum(s.performance.n for s in expected.states.values()) > 10_000

    dead = asyncio.run(read_topic(broker.bootstrap, settings.dlq_topic(settings.features_topic), timeout=60))
    dead += asyncio.run(read_topic(broker.bootstrap, settings.dlq_topic(settings.outcomes_topic), timeout=60))
    assert len(dlq_positions(dead)) == expected.malformed > 0
