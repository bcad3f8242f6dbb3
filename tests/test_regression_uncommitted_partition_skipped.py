"""Regression (found by bench/reliability.py, rebalance and crash during ingest): records that
faust's consumer read and dropped while a rebalance and table recovery were under way were
never read again on a partition the group had not committed yet — aiokafka's
`seek_to_committed` leaves a partition without a committed offset (or at 0) where the fetcher
got to. Two workers starting together lost a baseline in about one start in three (the
partition's lag stayed at 1 for good); a worker restarted after a crash before its first
commit sat with a lag that never moved. `streams.rewind` seeks those partitions to their start
when the rebalance completes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from model_monitoring.commands.broker import EmbeddedBroker
from model_monitoring.commands.harness import WorkerProcess, group_lag, produce, service_env
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.rewind import rewind_uncommitted
from model_monitoring.streams.settings import load_settings
from tests.integration.oracle import baseline_message
from tests.integration.test_ingest_crash import build_baselines


class FakeConsumer:
    def __init__(self, committed: dict[TopicPartition, int | None]) -> None:
        self.committed = committed
        self.seeks: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.committed)

    async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
        return dict(self.committed)

    async def seek_wait(self, partitions: dict[TopicPartition, int]) -> None:
        self.seeks.append(dict(partitions))


def app(consumer: FakeConsumer, reset: str = "earliest") -> Any:
    return SimpleNamespace(consumer=consumer, conf=SimpleNamespace(consumer_auto_offset_reset=reset),
                           tables=SimpleNamespace(changelog_topics={"app-partials-changelog"}))


async def test_partitions_without_a_committed_offset_start_over() -> None:
    none, zero, some = TopicPartition("in", 0), TopicPartition("in", 1), TopicPartition("in", 2)
    changelog = TopicPartition("app-partials-changelog", 0)
    consumer = FakeConsumer({none: None, zero: 0, some: 17, changelog: None})
    assert await rewind_uncommitted(app(consumer)) == [none, zero]
    assert consumer.seeks == [{none: 0, zero: 0}]  # the committed one is faust's to seek


async def test_nothing_to_do_with_latest_or_everything_committed() -> None:
    consumer = FakeConsumer({TopicPartition("in", 0): None})
    assert await rewind_uncommitted(app(consumer, reset="latest")) == []
    consumer = FakeConsumer({TopicPartition("in", 0): 3})
    assert await rewind_uncommitted(app(consumer)) == []
    assert consumer.seeks == []


@pytest.mark.integration
def test_two_workers_starting_together_load_every_baseline(broker: EmbeddedBroker, unique: str,
                                                           tmp_path: Path) -> None:
    """What lost a baseline one start in three before: the records are there before the
    workers start; each of three rounds must consume them all."""
    baselines = build_baselines()
    for round_ in range(3):
        env = service_env(broker.bootstrap, tmp_path / f"r{round_}-data-0",
                          app_id=f"{unique}-{round_}", topic_prefix=f"{unique}-{round_}.",
                          extra={"MODEL_MONITORING_PARTITIONS": "4",
                                 "MODEL_MONITORING_CRON_ENABLED": "false"})
        second = dict(env, MODEL_MONITORING_DATA_DIR=str(tmp_path / f"r{round_}-data-1"),
                      MODEL_MONITORING_WEB_PORT=str(int(env["MODEL_MONITORING_WEB_PORT"]) + 1))
        s = load_settings(env)
        asyncio.run(ensure_topics(s))
        asyncio.run(produce(broker.bootstrap, [(s.baselines_topic, *baseline_message(b))
                                               for b in baselines.values()]))
        workers = [WorkerProcess(e, tmp_path / f"r{round_}-w{i}.log").start()
                   for i, e in enumerate((env, second))]
        try:
            for w in workers:
                w.wait_ready()
            deadline = time.monotonic() + 30
            while asyncio.run(group_lag(broker.bootstrap, s.app_id, [s.baselines_topic])):
                assert time.monotonic() < deadline, f"round {round_}: a baseline was skipped"
                time.sleep(0.5)
        finally:
            for w in workers:
                w.stop()
