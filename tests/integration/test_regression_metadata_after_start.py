"""Regression: on Apache Kafka the test harness read a consumer group's lag as 0 and found no
partition to read in a topic (found by bench/reliability.py --engine kafka: the broker-kill
scenario saw "lag 0" before the ingest had ended, and reading a changelog raised
CancelledError). aiokafka's start() asks for the metadata of no topic; Kafka answers with none,
the embedded broker with every topic, so `partitions_for_topic` was None right after start() on
Kafka only. `topic_partitions` asks the broker for every topic first.

And a topic with no partitions in the metadata (absent, or not served for a moment: a Kafka
broker fenced after a stall) is a lag not known, not a lag of 0: the reliability bench's
broker-stall scenario on Kafka once ended its wait on such a "0" while the worker still had
890 records of the log's end to fold ("state differs from the offline fold")."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import LagUnknown, consumed, group_lag, produce, read_topic, topic_partitions

pytestmark = pytest.mark.integration


def test_partitions_lag_and_records_of_a_topic_right_after_start(broker: Broker, unique: str) -> None:
    topic = f"{unique}.lagged"

    async def scenario() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 3, 1)])
        finally:
            await admin.close()
        await produce(broker.bootstrap, [(topic, f"k{i}".encode(), b"v") for i in range(30)])
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
        await consumer.start()
        try:
            found = await topic_partitions(consumer, [topic, f"{unique}.absent"], timeout=1.0)
        finally:
            await consumer.stop()
        assert found == [TopicPartition(topic, p) for p in range(3)]
        # a group that has committed nothing lags by every message
        assert await group_lag(broker.bootstrap, f"{unique}-group", [topic]) == 30
        assert len(await read_topic(broker.bootstrap, topic, timeout=10.0, min_messages=30)) == 30
        # a topic without partitions in the metadata: its lag is not known, and not consumed
        absent = f"{unique}.absent"
        with pytest.raises(LagUnknown, match=absent):
            await group_lag(broker.bootstrap, f"{unique}-group", [topic, absent])
        assert not await consumed(broker.bootstrap, f"{unique}-group", [topic, absent])

    asyncio.run(scenario())
