"""The weekly run's scatter/gather: each partition merges its own partials over the window and
sends one part per (tenant, model); the evaluator of each (tenant, model) merges the parts of
every partition, evaluates, and publishes drift, degraded and snapshot events. The cost is
O(keys × bins), never O(events)."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from typing import Any

import orjson
from faust.types import EventT, StreamT

from model_monitoring.agents.published import already_published, identity
from model_monitoring.schemas.validation import MessageRejected, format_timestamp
from model_monitoring.streams.app import Monitor
from model_monitoring.streams.partitioned import partition_items
from model_monitoring.tables.alerts import degraded_events, drift_events, snapshot_counts
from model_monitoring.tables.evaluation import evaluate_snapshot
from model_monitoring.tables.evaluation_state import Evaluation
from model_monitoring.tables.histogram import FeatureHistogram
from model_monitoring.tables.partial import PartialKey, PartialState, is_partial_key

log = logging.getLogger("model_monitoring.snapshot")


def window_parts(items: Iterable[tuple[bytes, bytes]], partition: int, start_ms: int, end_ms: int,
                 bucket_ms: int, tenant_ids: list[str] | None) -> dict[str, dict[str, PartialState]]:
    """One partition's partials inside the window: (tenant:model) -> {"version|segment": sum}."""
    prefix = f"{partition}|".encode()
    tenants = set(tenant_ids) if tenant_ids is not None else None
    parts: dict[str, dict[str, PartialState]] = defaultdict(dict)
    for raw_key, raw_value in items:
        if not raw_key.startswith(prefix) or not is_partial_key(raw_key):
            continue
        key = PartialKey.decode(raw_key)
        if key.day * bucket_ms < start_ms or (key.day + 1) * bucket_ms > end_ms:
            continue
        if tenants is not None and key.tenant_id not in tenants:
            continue
        vs = f"{key.model_version}|{key.segment}"
        state = PartialState.from_bytes(raw_value)
        group = parts[key.model_key]
        group[vs] = group[vs].merge(state) if vs in group else state
    return parts


async def on_snapshot_request(monitor: Monitor, event: EventT) -> None:
    req = orjson.loads(event.message.value)
    partition = event.message.partition
    s, t = monitor.settings, monitor.topics
    parts = window_parts(partition_items(monitor.tables.partials, partition), partition, req["windowStartMs"],
                         req["windowEndMs"], s.bucket_ms, req.get("tenantIds"))
    for model_key, states in sorted(parts.items()):
        await t.snapshot_parts.send(key=model_key.encode(), value=orjson.dumps({
            "type": "part", "jobRunId": req["jobRunId"], "key": model_key, "partition": partition,
            "windowStartMs": req["windowStartMs"], "windowEndMs": req["windowEndMs"],
            "states": {vs: st.to_json() for vs, st in states.items()}}))
    await t.runs.send(key=req["jobRunId"].encode(), value=orjson.dumps(
        {"type": "report", "jobRunId": req["jobRunId"], "partition": partition,
         "keys": sorted(parts)}))


class Evaluator:
    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor

    async def handle(self, event: EventT) -> None:
        doc = orjson.loads(event.message.value)
        table = self.m.tables.evaluations
        key = f"{event.message.partition}|{doc['jobRunId']}|{doc['key']}".encode()
        raw = table.get(key)
        ev = Evaluation.from_bytes(raw) if raw is not None else Evaluation(
            doc["jobRunId"], doc["key"], doc["windowStartMs"], doc["windowEndMs"])
        if ev.done:
            if doc["type"] == "evaluate":  # a repeated request: repeat the report, not the events
                await self.report(ev)
            return
        if doc["type"] == "part":
            ev = ev.add_part(int(doc["partition"]), doc["states"])
        else:
            ev = ev.expect(tuple(doc["partitions"]))
        if ev.ready():
            published: set[tuple[str, ...]] = set()
            if ev.publishing_since_ms is None:
                ev = ev.publishing(int(time.time() * 1000))
                table[key] = ev.to_bytes()
                await self.m.app.producer.flush()  # the mark is out before any event
            else:  # an earlier attempt was interrupted: publish only what it did not
                published = await already_published(self.m.settings, ev.job_run_id, ev.model_key,
                                                     ev.publishing_since_ms)
                log.warning("evaluation of %s for run %s resumed: %d events already published",
                            ev.model_key, ev.job_run_id, len(published))
            counts = await self.evaluate(ev, published)
            ev = ev.finished(counts)
            table[key] = ev.to_bytes()
            await self.report(ev)
        else:
            table[key] = ev.to_bytes()

    async def report(self, ev: Evaluation) -> None:
        await self.m.topics.runs.send(key=ev.job_run_id.encode(), value=orjson.dumps(
            {"type": "evaluated", "jobRunId": ev.job_run_id, "key": ev.model_key,
             "counts": dict(ev.counts)}))

    def snapshots(self, ev: Evaluation) -> list[dict[str, Any]]:
        tenant, model = ev.model_key.split(":", 1)
        thresholds = self.m.settings.thresholds()
        out = []
        for (version, segment), state in sorted(ev.merged().items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            baseline = self.m.state["baseline_cache"].lookup(tenant, model, version)
            histogram = usable_histogram(state, baseline.fingerprint() if baseline else "")
            snap = evaluate_snapshot(
                baseline=baseline, histogram=histogram, performance=state.performance,
                thresholds=thresholds, tenant_id=tenant, model_id=model, model_version=version,
                segment=segment, window_start=format_timestamp(ev.window_start_ms),
                window_end=format_timestamp(ev.window_end_ms), job_run_id=ev.job_run_id,
                feature_names=list(histogram.counts))
            out.append(snap)
        return out

    async def evaluate(self, ev: Evaluation, published: AbstractSet[tuple[str, ...]] = frozenset()
                       ) -> dict[str, int]:
        started = time.perf_counter()
        t, metrics = self.m.topics, self.m.metrics
        tenant, model = ev.model_key.split(":", 1)
        detected_at = format_timestamp(int(time.time() * 1000))
        thresholds = self.m.settings.thresholds()
        totals = {"driftChecked": 0, "performanceChecked": 0, "driftDetected": 0, "performanceDegraded": 0}
        for snap in self.snapshots(ev):
            baseline = self.m.state["baseline_cache"].lookup(tenant, model, snap["modelVersion"])
            key = ev.model_key.encode()
            await self.publish(t.snapshot, "snapshot", key, snap, published)
            for alert in drift_events(snap, thresholds=thresholds, detected_at=detected_at,
                                      baseline_sample_size=baseline.sample_size if baseline else None):
                await self.publish(t.drift, "drift", key, alert, published)
                metrics.alerts.labels("drift", alert["severity"]).inc()
            for alert in degraded_events(snap, detected_at=detected_at):
                await self.publish(t.degraded, "degraded", key, alert, published)
                metrics.alerts.labels("degraded", "degraded").inc()
            for name, n in snapshot_counts(snap).items():
                totals[name] += n
            if snap["segment"] is None:
                self.export_gauges(tenant, model, snap)
        log.info("evaluated %s for run %s in %.3fs: %s", ev.model_key, ev.job_run_id,
                 time.perf_counter() - started, totals)
        return totals

    async def publish(self, topic: Any, kind: str, key: bytes, doc: dict[str, Any],
                      published: AbstractSet[tuple[str, ...]] = frozenset()) -> None:
        if published and identity(kind, doc) in published:
            return
        try:
            self.m.validators.validate(kind, doc)
        except MessageRejected as exc:  # a defect of ours: say so loudly, publish it anyway
            log.error("outgoing %s message off-contract: %s", kind, exc.detail)
        await topic.send(key=key, value=orjson.dumps(doc))

    def export_gauges(self, tenant: str, model: str, snap: dict[str, Any]) -> None:
        m = self.m.metrics
        for feature, verdict in snap.get("features", {}).items():
            if verdict.get("value") is not None:
                m.set_capped(m.psi, (tenant, model, feature), float(verdict["value"]))
        for metric, verdict in (snap.get("performance") or {}).items():
            if verdict and verdict.get("value") is not None:
                m.set_capped(m.metric_value, (tenant, model, metric), float(verdict["value"]))


def usable_histogram(state: PartialState, fingerprint: str) -> FeatureHistogram:
    """Counts made with the version's current bins only (partials counted before its baseline
    was registered, or under a replaced one, cannot be compared with it)."""
    if state.histogram.fingerprint == fingerprint:
        return state.histogram
    if not fingerprint:  # the baseline was withdrawn: names only
        return FeatureHistogram(counts={n: () for n in state.histogram.counts}, type_mismatch={},
                                n=state.histogram.n, fingerprint="")
    return FeatureHistogram.empty(fingerprint)


def register(monitor: Monitor) -> None:
    app, topics = monitor.app, monitor.topics
    evaluator = Evaluator(monitor)

    @app.agent(topics.snapshot_requests, name="snapshot")
    async def snapshot(stream: StreamT) -> None:
        async for event in stream.events():
            await on_snapshot_request(monitor, event)

    @app.agent(topics.snapshot_parts, name="evaluator")
    async def evaluate(stream: StreamT) -> None:
        async for event in stream.events():
            await evaluator.handle(event)
