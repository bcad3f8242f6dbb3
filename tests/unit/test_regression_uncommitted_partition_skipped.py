"""Regression (found by bench/reliability.py, rebalance and crash during ingest): records that
faust's consumer read and dropped while a rebalance and table recovery were under way were
never read again on a partition the group had not committed yet — aiokafka's
`seek_to_committed` leaves a partition without a committed offset (or at 0) where the fetcher
got to. Two workers starting together lost a baseline in about one start in three (the
partition's lag stayed at 1 for good); a worker restarted after a crash before its first
commit sat with a lag that never moved. `streams.rewind` seeks those partitions to their start
when the rebalance completes. (With two workers on the bundled broker:
tests/integration/test_regression_uncommitted_partition_skipped.py.)"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from model_monitoring.streams.rewind import rewind_uncommitted


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
