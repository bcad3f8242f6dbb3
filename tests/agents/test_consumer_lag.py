"""The consumer-lag gauge (agents/maintenance.py) on a real aiokafka consumer: a partition
revoked between the read of the assignment and the calls that measure it is skipped, not raised
(raised in faust's timer, it crashed a worker of the two-worker test on Kafka as a third one
joined), and the gauge of a partition no longer held is removed from /metrics."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from model_monitoring.agents.maintenance import export_consumer_lag, partition_lag
from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import produce
from model_monitoring.streams.metrics import Metrics
from model_monitoring.streams.settings import load_settings


async def fetched(consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
    """Until one fetch has come back: the partition's high watermark and position are known."""
    for _ in range(50):
        await consumer.getmany(tp, timeout_ms=200)
        if consumer.highwater(tp) is not None:
            return
    raise AssertionError(f"no fetch of {tp} came back")


@pytest.mark.integration
async def test_a_partition_revoked_meanwhile_has_no_lag_and_its_gauge_goes(broker: Broker, unique: str) -> None:
    s = load_settings({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                       "MODEL_MONITORING_FEATURES_TOPIC": f"{unique}.features"})
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(s.features_topic, 1, 1)])
    finally:
        await admin.close()
    await produce(broker.bootstrap, [(s.features_topic, b"k", b"{}")] * 3)
    tp = TopicPartition(s.features_topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=1)
    await consumer.start()
    try:
        consumer.assign([tp])
        await fetched(consumer, tp)
        lag = await partition_lag(consumer, tp)
        assert lag is not None and 0 <= lag <= 3
        metrics = Metrics()
        monitor = SimpleNamespace(app=SimpleNamespace(consumer=consumer), settings=s, metrics=metrics)
        exported: set[tuple[str, str]] = set()
        await export_consumer_lag(monitor, exported)  # type: ignore[arg-type]
        sample = metrics.registry.get_sample_value("model_monitoring_consumer_lag",
                                                   {"topic": s.features_topic, "partition": "0"})
        assert sample == lag and exported == {(s.features_topic, "0")}

        consumer.assign([])  # revoked, as a rebalance does while the timer awaits a position
        assert await partition_lag(consumer, tp) is None  # was: AssertionError('Partition is not assigned')
        await export_consumer_lag(monitor, exported)  # type: ignore[arg-type]
        assert metrics.registry.get_sample_value("model_monitoring_consumer_lag",
                                                 {"topic": s.features_topic, "partition": "0"}) is None
        assert exported == set()
    finally:
        await asyncio.wait_for(consumer.stop(), 30)
