"""Timers that keep state bounded and the gauges current."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from aiokafka.errors import IllegalStateError
from faust.types import TP

from model_monitoring.streams.app import Monitor
from model_monitoring.streams.write_gate import write_gate
from model_monitoring.tables.evaluation_state import expired_evaluations
from model_monitoring.tables.expiry import expired_partials, high_water_marks, partials_to_trim
from model_monitoring.tables.job_run import JobRun
from model_monitoring.tables.keys import RunKey, RunStatusKey, decode_job_runs_key, is_meta_key, partition_of
from model_monitoring.tables.partial import PartialState

log = logging.getLogger("model_monitoring.maintenance")


async def expire_state(monitor: Monitor) -> tuple[int, int]:
    """Delete expired partials and join entries (and the join log's batches left with no live
    entry) on this worker's active partitions, each partition under the lock its ingest folds
    take."""
    s, t, m = monitor.settings, monitor.tables, monitor.metrics
    marks = high_water_marks((k, v) for k, v in t.partials.items() if is_meta_key(k))
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    trims: dict[int, list[bytes]] = defaultdict(list)
    for key in expired_partials(list(t.partials.keys()), marks, s.bucket_ms, s.retention_ms, s.join_ttl_ms):
        by_partition[partition_of(key)].append(key)
    for key, _ in partials_to_trim(list(t.partials.items()), marks, s.bucket_ms, s.retention_ms,
                                   s.join_ttl_ms):
        trims[partition_of(key)].append(key)
    for partition, keys in trims.items():
        async with monitor.partition_locks.lock(partition):
            for key in keys:  # read again under the lock: a fold may have written it since
                raw = t.partials.get(key)
                if raw is not None:
                    t.partials[key] = PartialState.from_bytes(raw).trimmed().to_bytes()
    partials = joins = 0
    for partition, doomed in by_partition.items():
        async with monitor.partition_locks.lock(partition):
            for key in doomed:
                if t.partials.pop(key, None) is not None:
                    partials += 1
    live = 0
    for partition in list(monitor.joins.ready):  # the partitions folded here since assigned
        async with monitor.partition_locks.lock(partition):
            if partition not in monitor.joins.ready or partition not in marks:
                continue
            plan = await monitor.joins.expire(partition, marks[partition], s.join_ttl_ms)
        live += plan.live
        joins += len(plan.expired)
        for _key, state in plan.expired:
            m.join_expired.labels(state).inc()
    m.partials_expired.inc(partials)
    m.join_buffer_size.set(live)
    if partials or joins:
        log.info("expired %d partials and %d join entries", partials, joins)
    return partials, joins


RUN_HISTORY_MS = 60 * 86_400_000  # runs and their evaluations are kept 60 days


def expire_runs(monitor: Monitor, now_ms: int) -> int:
    """Forget finished runs (job tracker, evaluators, run status) after RUN_HISTORY_MS."""
    t = monitor.tables
    doomed = 0
    old_runs: set[str] = set()
    items = [(decode_job_runs_key(k), k, v) for k, v in t.job_runs.items()]
    for key, _, raw in items:
        if isinstance(key, RunKey):
            run = JobRun.from_bytes(raw)
            if run.status != "running" and run.started_ms < now_ms - RUN_HISTORY_MS:
                old_runs.add(run.job_run_id)
                t.run_status.pop(RunStatusKey(run.job_run_id).encode(), None)
    for key, raw_key, _ in items:  # the runs and their reports and per-key evaluations
        if key.job_run_id in old_runs:
            t.job_runs.pop(raw_key, None)
            doomed += 1
    for raw_key in expired_evaluations(list(t.evaluations.items()), now_ms - RUN_HISTORY_MS):
        t.evaluations.pop(raw_key, None)
        doomed += 1
    return doomed


def register(monitor: Monitor) -> None:
    @monitor.app.timer(monitor.settings.maintenance_interval_seconds, name="expire-state")
    async def expire() -> None:
        async with write_gate(monitor.app).writing():  # not while a rebalance recovers the tables
            await expire_state(monitor)
            expire_runs(monitor, int(time.time() * 1000))

    register_lag(monitor)


async def partition_lag(consumer: Any, tp: TP) -> int | None:
    """The fetched high watermark minus the consumer's position; None while either is unknown, or
    once the partition is no longer assigned: a rebalance can revoke it between the read of the
    assignment and these calls (the consumer runs in a thread of its own, and `position` awaits),
    and aiokafka then fails `highwater` with an AssertionError and `position` with
    IllegalStateError. Raised in a faust timer, that took the worker down (the two-worker test on
    Kafka: "Crashed reason=AssertionError('Partition is not assigned')" as a third worker joined)."""
    try:
        high = consumer.highwater(tp)
        position = await consumer.position(tp)
    except (AssertionError, IllegalStateError):
        return None
    if high is None or position is None:
        return None
    return max(0, int(high) - int(position))


async def export_consumer_lag(monitor: Monitor, exported: set[tuple[str, str]]) -> None:
    """Per assigned input partition: the fetched high watermark minus the consumer's position.
    `exported`: the (topic, partition) gauges set before, whose partitions this worker no longer
    holds are removed (a revoked partition's last value would otherwise stay on /metrics)."""
    consumer = monitor.app.consumer
    s = monitor.settings
    gauge = monitor.metrics.consumer_lag
    inputs = {s.features_topic, s.outcomes_topic, s.baselines_topic, s.trigger_topic,
              s.repartition_topic(s.features_topic), s.repartition_topic(s.outcomes_topic)}
    assigned = sorted(tp for tp in consumer.assignment() if tp.topic in inputs)
    for tp in assigned:
        lag = await partition_lag(consumer, tp)
        if lag is not None:
            gauge.labels(tp.topic, str(tp.partition)).set(lag)
            exported.add((tp.topic, str(tp.partition)))
    held = {(tp.topic, str(tp.partition)) for tp in assigned}
    for labels in sorted(exported - held):
        gauge.remove(*labels)
        exported.discard(labels)


def register_lag(monitor: Monitor) -> None:
    exported: set[tuple[str, str]] = set()

    @monitor.app.timer(10.0, name="consumer-lag")
    async def lag() -> None:
        try:
            await export_consumer_lag(monitor, exported)
        except Exception:  # a gauge must not take the worker down: faust stops the app on a timer's error
            log.exception("consumer lag not exported this time")
