"""Invariant 1 on a real broker: a worker killed with SIGKILL in the middle of ingesting and
restarted ends with exactly the state of one offline pass over the same log; every malformed
message is in the DLQ."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from model_monitoring.commands.broker import EmbeddedBroker
from model_monitoring.commands.harness import WorkerProcess, group_lag, produce, read_topic, service_env
from model_monitoring.commands.simulate import Scenario, StreamConfig, generate, reference_records
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import load_settings
from model_monitoring.tables.baseline import build_baseline
from tests.integration.oracle import (
    baseline_message,
    dlq_positions,
    offline_fold,
    stream_state,
    wait_for_stable_changelog,
)

pytestmark = pytest.mark.integration

MODELS = ("risk-scoring", "churn")


def build_baselines(version: str = "3") -> dict:
    return {(m, version): build_baseline(reference_records(m, n=5000, seed=11), model_id=m,
                                         model_version=version, tenant_id=None,
                                         task="classification")
            for m in MODELS}


async def wait_until(predicate, timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(every)
    return False


def test_sigkill_mid_ingest_equals_offline_fold(broker: EmbeddedBroker, unique: str,
                                                tmp_path: Path) -> None:
    env = service_env(broker.bootstrap, tmp_path / "data", app_id=f"{unique}-mm",
                      topic_prefix=f"{unique}.", extra={"MODEL_MONITORING_PARTITIONS": "4",
                                                        "MODEL_MONITORING_BATCH_SIZE": "500"})
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
        assert asyncio.run(wait_until(
            lambda: _async(worker.metric("model_monitoring_records_consumed_total",
                                         topic=settings.baselines_topic) >= 2), 60))
        topic_of = {"features": settings.features_topic, "outcomes": settings.outcomes_topic}
        asyncio.run(produce(broker.bootstrap, [(topic_of[m.kind], m.key, m.value) for m in messages]))
        # kill in the middle: some but not all of the records are in
        assert asyncio.run(wait_until(lambda: _async(worker.metric(
            "model_monitoring_records_consumed_total", topic=settings.features_topic) >= 6000), 120,
            every=0.1)), worker.log_tail()
        consumed_at_kill = worker.metric("model_monitoring_records_consumed_total",
                                         topic=settings.features_topic)
        worker.kill()
        assert consumed_at_kill < n_features * 1.02
    finally:
        worker.kill()

    restarted = WorkerProcess(env, tmp_path / "worker-2.log").start()
    try:
        restarted.wait_ready()
        inputs = [settings.features_topic, settings.outcomes_topic]
        assert asyncio.run(wait_until(
            lambda: _lag_zero(broker.bootstrap, settings.app_id, inputs), 240, every=1.0)), \
            restarted.log_tail()
        changelog = asyncio.run(wait_for_stable_changelog(
            broker.bootstrap, f"{settings.app_id}-partials-changelog"))
    finally:
        restarted.stop()

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
    assert matched > 10_000

    dead = asyncio.run(read_topic(broker.bootstrap, settings.dlq_topic(settings.features_topic)))
    dead += asyncio.run(read_topic(broker.bootstrap, settings.dlq_topic(settings.outcomes_topic)))
    assert len(dlq_positions(dead)) == expected.malformed > 0


async def _async(value: bool) -> bool:
    return value


async def _lag_zero(bootstrap: str, group: str, topics: list[str]) -> bool:
    return await group_lag(bootstrap, group, topics) == 0
