"""What an interrupted evaluation already published. A worker killed between publishing a run's
events and recording that it had would, on redelivery, publish them all again (found by
bench/reliability.py, crash during the run). The evaluator marks the moment it starts
publishing; a redelivered evaluation that finds the mark reads its own output topics back from
that moment and publishes only what is missing, so each event goes out once. Kafka
transactions would make this unnecessary; the embedded broker has none (DESIGN.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from model_monitoring.streams.highwater import true_end_offsets
from model_monitoring.streams.settings import Settings

log = logging.getLogger("model_monitoring.snapshot")

# the mark and the events carry the same worker's clock; a margin for a clock step between them
READ_BACK_MARGIN_MS = 60_000


def identity(kind: str, doc: Mapping[str, Any]) -> tuple[str, ...]:
    """What makes two published messages the same event (tail's dedup key, the same way)."""
    if kind == "snapshot":
        return ("snapshot", *(str(doc.get(k)) for k in
                              ("jobRunId", "tenantId", "modelId", "modelVersion", "segment")))
    return (kind, str(doc.get("eventId")))


async def already_published(s: Settings, job_run_id: str, model_keys: list[str], since_ms: int,
                            timeout: float = 60.0) -> dict[str, set[tuple[str, ...]]]:
    """tenant:model -> identities of its events of `job_run_id` on the output topics, published
    since `since_ms` (one read-back for all the keys). Best effort: what cannot be read in time
    counts as not published (a repeat, never a loss)."""
    kinds = {s.snapshot_topic: "snapshot", s.drift_topic: "drift", s.degraded_topic: "degraded",
             s.drift_resolved_topic: "resolved", s.performance_recovered_topic: "recovered"}
    wanted = set(model_keys)

    def ours(doc: Mapping[str, Any]) -> bool:
        return (doc.get("jobRunId") == job_run_id
                and f"{doc.get('tenantId')}:{doc.get('modelId')}" in wanted)

    what = f"{len(wanted)} keys of run {job_run_id}" if len(wanted) > 1 else f"{model_keys[0]} of run {job_run_id}"
    found = await read_back(s, list(kinds), since_ms, ours, what, timeout)
    out: dict[str, set[tuple[str, ...]]] = {key: set() for key in wanted}
    for topic, doc in found:
        out[f"{doc.get('tenantId')}:{doc.get('modelId')}"].add(identity(kinds[topic], doc))
    return out


async def terminal_published(s: Settings, topic: str, job_run_id: str, since_ms: int,
                             timeout: float = 60.0) -> bool:
    """Is the run's `workflow.job.completed` (or `.failed`) on `topic` since `since_ms`?"""
    found = await read_back(s, [topic], since_ms, lambda doc: doc.get("jobRunId") == job_run_id,
                            f"the end of run {job_run_id}", timeout)
    return bool(found)


async def read_back(s: Settings, topics: list[str], since_ms: int,
                    match: Callable[[Mapping[str, Any]], bool], what: str, timeout: float
                    ) -> list[tuple[str, Mapping[str, Any]]]:
    """(topic, document) of the messages on `topics` since `since_ms` (less a margin) that
    `match` accepts, read up to the topics' end offsets."""
    client = s.kafka_client_kwargs()
    consumer = AIOKafkaConsumer(**client, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    found: list[tuple[str, Mapping[str, Any]]] = []
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(consumer.partitions_for_topic(t) or range(s.partitions))]
        consumer.assign(tps)
        starts = await consumer.offsets_for_times(
            {tp: max(0, since_ms - READ_BACK_MARGIN_MS) for tp in tps})
        for tp in tps:
            at = starts.get(tp)
            consumer.seek(tp, at.offset if at is not None else 0)
        ends = await true_end_offsets(client, tps, await consumer.end_offsets(tps))
        pending = {tp for tp in tps if ends.get(tp)}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            batch = await consumer.getmany(*pending, timeout_ms=200, max_records=5_000)
            for tp, records in batch.items():
                for rec in records:
                    doc = orjson.loads(rec.value or b"null")
                    if isinstance(doc, dict) and match(doc):
                        found.append((tp.topic, doc))
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        if pending:
            log.warning("reading back %s: %d partitions unread after %.0fs", what, len(pending), timeout)
    except (TimeoutError, KafkaError, OSError, ValueError) as exc:
        log.warning("reading back %s failed: %r", what, exc)
    finally:
        await consumer.stop()
    return found
