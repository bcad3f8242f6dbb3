"""`model-monitoring trigger --after-ingest`: the trigger is sent only once the worker group has
committed every feature and outcome published before it (and, at least once, what it forwarded
to its repartition topics); a run then counts them all. Without a group that catches up, the
command sends nothing and says why."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import ingest_topics, produce, read_topic, service_env, topic_partitions
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.highwater import true_end_offsets
from model_monitoring.streams.settings import load_settings

pytestmark = pytest.mark.integration


def trigger(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "model_monitoring.commands.cli", "trigger", *args],
                          env=env, capture_output=True, text=True, timeout=120)


async def commit_to_end(bootstrap: str, group: str, topics: list[str]) -> None:
    """What a worker of the group does once it has folded everything: commit the end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topics)
        consumer.assign(tps)
        ends = await true_end_offsets({"bootstrap_servers": bootstrap}, tps, await consumer.end_offsets(tps))
        await consumer.commit({tp: end for tp, end in ends.items() if end > 0})
    finally:
        await consumer.stop()


def test_trigger_waits_for_the_group_to_take_in_the_inputs(broker: Broker, unique: str, tmp_path: Path) -> None:
    env = service_env(broker, tmp_path / "data", app_id=f"{unique}-after", topic_prefix=f"{unique}.")
    s = load_settings(env)
    asyncio.run(ensure_topics(s))
    asyncio.run(produce(broker.bootstrap, [(s.features_topic, f"p{i}".encode(), b"{}") for i in range(7)]
                        + [(s.outcomes_topic, b"p1", b"{}")]))

    # nobody consumes: nothing is sent, and the message says how much is left
    out = trigger(env, "--job-run-id", "waits", "--after-ingest", "3")
    assert out.returncode == 1, out
    assert "not sent" in out.stderr and "still has 8 messages" in out.stderr, out.stderr
    assert asyncio.run(read_topic(broker.bootstrap, s.trigger_topic, timeout=1.0)) == []

    # once the group has committed the inputs (and its repartition topics, empty here), it is
    assert s.repartition_topic(s.features_topic) in ingest_topics(s)
    asyncio.run(commit_to_end(broker.bootstrap, s.app_id, ingest_topics(s)))
    out = trigger(env, "--job-run-id", "waits", "--after-ingest", "30")
    assert out.returncode == 0, out
    assert out.stdout.strip() == "waits"
    [sent] = asyncio.run(read_topic(broker.bootstrap, s.trigger_topic, timeout=1.0, min_messages=1))
    assert sent.key == b"waits"
