"""The ML service's producers may be librdkafka's: confluent-kafka from PyPI (which bundles
librdkafka) produces both input topics with its default partitioner, `consistent_random` (CRC32
of the key), and the join still ends exact and complete.

On both brokers where librdkafka can talk to them. The embedded Tansu broker rejects the
ApiVersions request of older librdkafka (kcat 1.7.1 on librdkafka 2.0.2, Debian 12: "Read
underflow"); confluent-kafka 2.16.1 (librdkafka 2.16.0) gets through and produces. Where the
installed one is refused, the test says so and skips on Tansu; on Kafka it must run."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import pytest

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.simulate import Message, Scenario, StreamConfig, generate
from model_monitoring.tables.partitioning import partition_for
from tests.integration.test_any_partitioner import MISPARTITIONED, PARTITIONS, Service

pytestmark = pytest.mark.integration


def librdkafka_producer(broker: Broker) -> Any:
    """A confluent-kafka producer with its defaults, once it has the cluster's metadata."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    try:
        producer.list_topics(timeout=20)
    except confluent_kafka.KafkaException as exc:
        if broker.engine == "tansu":
            pytest.skip(f"the embedded Tansu broker refuses librdkafka {confluent_kafka.libversion()[0]} "
                        f"(its ApiVersions request): {exc}; run with MM_TEST_BROKER=kafka")
        raise
    return producer


def produce_with_librdkafka(producer: Any, messages: list[tuple[str, bytes, bytes]]) -> dict[bytes, int]:
    """Send in order; the partition each key went to, from the delivery reports."""
    partitions: dict[bytes, int] = {}
    errors: list[str] = []

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            partitions[msg.key()] = msg.partition()  # type: ignore[attr-defined]

    for topic, key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:  # its local queue is full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0 and not errors, errors
    return partitions


def test_confluent_kafka_producer_joins_exactly(broker: Broker, unique: str, tmp_path: Path) -> None:
    producer = librdkafka_producer(broker)
    service = Service(broker, unique, tmp_path)
    cfg = StreamConfig(tenants=("acme", "globex"), events_per_key=150, seed=31,
                       scenario=Scenario(early_outcome_rate=0.1, duplicate_rate=0.02))
    messages: list[Message] = list(generate(cfg))
    worker = service.start("worker")
    try:
        partitions = produce_with_librdkafka(
            producer, [(service.topic_of[m.kind], m.key, m.value) for m in messages])
        service.wait_consumed(worker, messages)
        forwarded = {kind: worker.metric(MISPARTITIONED, topic=service.topic_of[kind])
                     for kind in ("features", "outcomes")}
    finally:
        worker.stop()
    # librdkafka's default is CRC32, as tests/support/partitioners.py plays it
    assert all(p == zlib.crc32(key) % PARTITIONS for key, p in partitions.items())
    elsewhere = sum(1 for m in messages if partitions[m.key] != partition_for(m.key, PARTITIONS))
    figures = service.check(messages)
    assert figures.outcomes > 400
    assert forwarded["features"] + forwarded["outcomes"] >= elsewhere > 0.8 * len(messages)
    print(f"\nconfluent-kafka on {broker.engine}: joined {figures.joined} of {figures.outcomes} outcomes, "
          f"Brier {figures.brier!r} (numpy {figures.brier_numpy!r}), forwarded {forwarded}")
