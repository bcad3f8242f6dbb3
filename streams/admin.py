"""Create the service's topics if absent, and refuse to start on inputs (or repartition topics)
that are not co-partitioned (the join would silently miss pairs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from model_monitoring.streams.settings import Settings
from model_monitoring.streams.topics import topic_specs

log = logging.getLogger("model_monitoring.admin")


class TopicLayoutError(RuntimeError):
    """The existing topics do not have the layout the service needs."""


async def ensure_topics(s: Settings, timeout: float = 60.0) -> dict[str, int]:
    """Create missing topics, waiting up to `timeout` s for Kafka; return every topic's partition count."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(**s.kafka_client_kwargs(), request_timeout_ms=10_000)
        try:
            await admin.start()
            break
        except KafkaError as exc:
            await admin.close()
            if asyncio.get_running_loop().time() > deadline:
                raise TopicLayoutError(f"cannot reach Kafka at {s.kafka_bootstrap_servers}: {exc}") from exc
            log.warning("waiting for Kafka at %s: %s", s.kafka_bootstrap_servers, exc)
            await asyncio.sleep(1.0)
    return await _create_missing(admin, s)


async def create_topics(s: Settings) -> dict[str, int]:
    """One attempt of `ensure_topics`, Kafka's errors raised as they are: the worker's
    start-up diagnoses and retries them itself (streams/preflight.py)."""
    admin = AIOKafkaAdminClient(**s.kafka_client_kwargs(), request_timeout_ms=10_000)
    try:
        await admin.start()
    except BaseException:
        await admin.close()
        raise
    return await _create_missing(admin, s)


async def _create_missing(admin: AIOKafkaAdminClient, s: Settings) -> dict[str, int]:
    """Create the missing topics with a started client, which this closes; check the layout."""
    try:
        specs = topic_specs(s)
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, int(spec["partitions"]), s.replication_factor,  # type: ignore[call-overload]
                            topic_configs=dict(spec["config"]))  # type: ignore[call-overload]
                   for name, spec in specs.items() if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            log.info("created topics: %s", ", ".join(t.name for t in missing))
        counts = await _partition_counts(admin, list(specs))
    finally:
        await admin.close()
    f, o = counts.get(s.features_topic), counts.get(s.outcomes_topic)
    if f != o:
        raise TopicLayoutError(
            f"{s.features_topic} has {f} partitions and {s.outcomes_topic} has {o}: the inputs "
            "must be co-partitioned (same partition count, keyed by predictionId)")
    if f != s.partitions:
        raise TopicLayoutError(
            f"{s.features_topic} has {f} partitions but MODEL_MONITORING_PARTITIONS is "
            f"{s.partitions}; set it to {f}")
    for name in (s.repartition_topic(s.features_topic), s.repartition_topic(s.outcomes_topic)):
        if counts.get(name) != f:
            raise TopicLayoutError(
                f"the internal topic {name} has {counts.get(name)} partitions and the inputs {f}: "
                "it must be co-partitioned with them (delete it while no record waits in it, "
                "and the worker creates it again)")
    return counts


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str],
                            timeout: float = 30.0) -> dict[str, int]:
    """Every topic's partition count, once each partition has a leader: a topic just created has
    none for a moment (on Apache Kafka, longer under load), and a message sent to it meanwhile
    is retried until the producer gives up (NotLeaderForPartitionError)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(names)
        counts = {d["topic"]: len(d.get("partitions") or []) for d in described
                  if not d.get("error_code")}
        leaderless = [d["topic"] for d in described
                      if any(p.get("leader", -1) < 0 for p in d.get("partitions") or [])]
        if all(counts.get(n) for n in names) and not leaderless:
            return counts
        if asyncio.get_running_loop().time() > deadline:
            log.warning("topics without a leader after %.0f s: %s", timeout,
                        ", ".join(sorted(leaderless)) or "none (some not described)")
            return counts
        await asyncio.sleep(0.2)
