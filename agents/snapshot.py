"""The weekly run's scatter/gather: each partition merges its own partials over the window and
sends one part per (tenant, model); the evaluator of each (tenant, model) merges the parts of
every partition, evaluates, carries the key's incidents (table `incidents`) through the run, and
publishes snapshot, drift, degraded, resolved and recovered events. The cost is
O(keys × bins), never O(events)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import orjson
from faust.types import EventT

from model_monitoring.agents.published import already_published, identity
from model_monitoring.schemas.rejection import MessageRejected
from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.streams.app import Monitor
from model_monitoring.streams.partitioned import partition_items
from model_monitoring.streams.per_event import per_event_agent
from model_monitoring.streams.producer_buffer import flush_durably
from model_monitoring.streams.topics import evaluator_partition
from model_monitoring.tables.baseline import BaselineLookup
from model_monitoring.tables.evaluation_state import Evaluation, PartsGather
from model_monitoring.tables.incidents import IncidentBook
from model_monitoring.tables.keys import EvaluationKey, GatherKey, IncidentBookKey, PartsChunkKey, partition_of
from model_monitoring.tables.partial import PartialState
from model_monitoring.tables.psi import FeatureVerdicts
from model_monitoring.tables.run_evaluation import ALERT_STATUSES, KeyReport, evaluate_key, want_verdicts, window_parts
from model_monitoring.tables.run_messages import (
    EVALUATE_BATCH,
    EvaluateKeys,
    EvaluateRequest,
    KeysEvaluated,
    PartitionReport,
    SnapshotPart,
    SnapshotParts,
    SnapshotRequest,
    decode_part_message,
)

log = logging.getLogger("model_monitoring.snapshot")

Outgoing = tuple[str, dict[str, Any], bytes]  # an event to send: (kind, document, its bytes)


async def on_snapshot_request(monitor: Monitor, event: EventT) -> None:
    req = SnapshotRequest.from_bytes(event.message.value or b"")
    partition = event.message.partition
    s, t = monitor.settings, monitor.topics
    parts = window_parts(partition_items(monitor.tables.partials, partition), partition,
                         req.window_start_ms, req.window_end_ms, s.bucket_ms, req.tenant_ids)
    by_evaluator: dict[int, dict[str, Any]] = {e: {} for e in range(s.partitions)}
    for model_key, states in parts.items():
        by_evaluator[evaluator_partition(model_key, s.partitions)][model_key] = states
    for evaluator, keys in sorted(by_evaluator.items()):  # to every one, so each knows when it has all
        for message in SnapshotParts.chunked(req.job_run_id, partition, req.window_start_ms,
                                             req.window_end_ms, s.partitions, keys):
            await t.snapshot_parts.send(key=req.job_run_id.encode(), partition=evaluator,
                                        value=message.to_bytes())
    await t.runs.send(key=req.job_run_id.encode(),
                      value=PartitionReport(req.job_run_id, partition, tuple(sorted(parts))).to_bytes())


class ChunkReader:
    """The parts chunks of one run on one evaluator partition, each decoded once per use."""

    def __init__(self, table: Any, partition: int, gather: PartsGather) -> None:
        self.table, self.partition, self.gather = table, partition, gather
        self.decoded: dict[int, dict[int, dict[str, bytes]]] = {}

    def part(self, source: int, model_key: str) -> bytes:
        index = self.gather.chunk_of(source, model_key)
        by_index = self.decoded.setdefault(source, {})
        if index is not None and index not in by_index:
            raw = self.table.get(PartsChunkKey(self.partition, self.gather.job_run_id, source, index).encode())
            if raw is not None:
                by_index[index] = dict(SnapshotParts.from_bytes(raw).parts)
        part = by_index.get(index, {}).get(model_key) if index is not None else None
        if part is None:
            raise RuntimeError(f"evaluation {self.gather.job_run_id} {model_key}: the part of "
                               f"partition {source} is expected but in no chunk kept")
        return part


class Evaluator:
    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor
        self.published: dict[str, int] = {}  # events encoded to publish, by kind (the schema check's sample)

    async def handle(self, event: EventT) -> None:
        raw = event.message.value or b""
        message = decode_part_message(raw)
        partition = event.message.partition
        if isinstance(message, SnapshotParts):
            await self.receive_chunk(partition, message, raw)
            return
        gather = self.load_gather(partition, message.job_run_id, message.window_start_ms,
                                  message.window_end_ms)
        if isinstance(message, SnapshotPart):  # one key's part (an older release's message)
            ev = self.load(partition, message.job_run_id, message.key, message.window_start_ms,
                           message.window_end_ms)
            if ev.done or ev.has_part(message.partition):
                return  # a redelivered part is kept once
            self.m.tables.evaluations[ev.part_key(partition, message.partition)] = message.stored
            ev = ev.receive(message.partition)
            if ev.ready(gather.complete()):
                await self.evaluate_keys(partition, [ev], [], gather)
            else:
                self.save(partition, ev)
            return
        request = EvaluateKeys.one(message) if isinstance(message, EvaluateRequest) else message
        await self.evaluate_request(partition, request, gather)

    async def evaluate_request(self, partition: int, request: EvaluateKeys, gather: PartsGather) -> PartsGather:
        """Evaluate the keys of `request` that have every expected part; repeat the report of
        those already done; the others wait for their parts. Returns the run's gather after."""
        gathered = gather.complete()
        ready, repeated, waiting = [], [], []
        for model_key, partitions in request.keys:
            ev = self.load(partition, request.job_run_id, model_key, request.window_start_ms,
                           request.window_end_ms)
            if ev.done:  # a repeated request: repeat the report, not the events
                repeated.append(ev)
                continue
            ev = ev.expect(partitions)
            if ev.ready(gathered):
                ready.append(ev)
            else:  # a part not in yet: evaluated when it comes
                self.save(partition, ev)
                waiting.append(model_key)
        if waiting:
            gather = gather.wait(waiting)
            self.save_gather(partition, gather)
        return await self.evaluate_keys(partition, ready, repeated, gather)

    async def receive_chunk(self, partition: int, message: SnapshotParts, raw: bytes) -> None:
        """Keep a chunk of parts as it came (once). Once every chunk of every source is in, the
        keys are evaluated (or their reports repeated: a redelivered chunk after a crash finds
        them done); before that, the keys an older release's request left waiting that it
        completes."""
        gather = self.load_gather(partition, message.job_run_id, message.window_start_ms,
                                  message.window_end_ms)
        if not gather.has(message.partition, message.chunk):
            key = PartsChunkKey(partition, message.job_run_id, message.partition, message.chunk)
            self.m.tables.evaluations[key.encode()] = raw
            gather = gather.receive(message.partition, message.chunk, message.chunks, message.keys,
                                    message.sources)
            self.save_gather(partition, gather)  # after the chunk: a crash in between keeps it again
        elif not gather.all_in():
            return  # a redelivered chunk is kept once
        if gather.all_in():
            keys = tuple(gather.keys().items())
            for i in range(0, len(keys), EVALUATE_BATCH):
                gather = await self.evaluate_request(partition, EvaluateKeys(
                    message.job_run_id, keys[i:i + EVALUATE_BATCH], message.window_start_ms,
                    message.window_end_ms), gather)
            return
        gathered = gather.complete()
        ready = []
        for model_key in sorted(gather.waiting):
            ev = self.load(partition, message.job_run_id, model_key, message.window_start_ms,
                           message.window_end_ms)
            if ev.ready(gathered):
                ready.append(ev)
        if ready:
            await self.evaluate_keys(partition, ready, [], gather)

    def load_gather(self, partition: int, job_run_id: str, window_start_ms: int,
                    window_end_ms: int) -> PartsGather:
        raw = self.m.tables.evaluations.get(GatherKey(partition, job_run_id).encode())
        if raw is not None:
            return PartsGather.from_bytes(raw)
        return PartsGather(job_run_id, window_start_ms, window_end_ms)

    def save_gather(self, partition: int, gather: PartsGather) -> None:
        self.m.tables.evaluations[GatherKey(partition, gather.job_run_id).encode()] = gather.to_bytes()

    def load(self, partition: int, job_run_id: str, model_key: str, window_start_ms: int,
             window_end_ms: int) -> Evaluation:
        raw = self.m.tables.evaluations.get(EvaluationKey(partition, job_run_id, model_key).encode())
        if raw is not None:
            return Evaluation.from_bytes(raw)
        return Evaluation(job_run_id, model_key, window_start_ms, window_end_ms)

    def save(self, partition: int, ev: Evaluation) -> None:
        key = EvaluationKey(partition, ev.job_run_id, ev.model_key).encode()
        self.m.tables.evaluations[key] = ev.to_bytes()

    async def evaluate_keys(self, partition: int, ready: list[Evaluation], repeated: list[Evaluation],
                            gather: PartsGather) -> PartsGather:
        """Evaluate the ready keys of one run on this evaluator partition, publish, and report
        them (with the repeated ones) in one message. Each key's publishing mark and incidents
        are flushed before any of its events (one flush for all the fresh keys); a key found
        marked was interrupted: evaluated again from its mark, publishing only what is missing.
        Each key's events are encoded as soon as it is evaluated (`encode`), sent after the flush.
        A pass over the keys reads each baseline once (`BaselineCache.once`: no await in the pass,
        so the table cannot change under it). Returns the run's gather after (the keys done
        noted, their chunks dropped)."""
        t = self.m.tables
        chunks = ChunkReader(t.evaluations, partition, gather)
        fresh = [ev for ev in ready if ev.publishing_since_ms is None]
        resumed = [ev for ev in ready if ev.publishing_since_ms is not None]
        reports: list[tuple[Evaluation, KeyReport, list[Outgoing]]] = []
        if fresh:
            now = int(time.time() * 1000)
            baseline_for = self.m.baselines.once()  # this pass: no await up to the flush
            # the feature checks of every fresh key first, in one numpy pass per feature baseline
            verdicts = FeatureVerdicts(self.m.settings.thresholds())
            merged = {}
            for ev in fresh:
                merged[ev.model_key] = ev.merged(self.kept_parts(ev, partition, chunks))
                want_verdicts(ev.model_key, merged[ev.model_key], baseline_for, verdicts)
            verdicts.compute()
            for ev in fresh:
                book_key = IncidentBookKey(partition, ev.model_key).encode()
                report = self.evaluate(ev, book_key, now, chunks, baseline_for, merged.pop(ev.model_key),
                                       verdicts)
                ev = ev.publishing(now)
                self.save(partition, ev)
                t.incidents[book_key] = report.incidents.to_bytes()
                reports.append((ev, report, self.encode(report)))
            await flush_durably(self.m.app)  # the marks and the incidents are out before any event
        if resumed:
            since = min(ev.publishing_since_ms or 0 for ev in resumed)
            published = await already_published(self.m.settings, resumed[0].job_run_id,
                                                [ev.model_key for ev in resumed], since)
            baseline_for = self.m.baselines.once()  # this pass: after the await, none in it
            for ev in resumed:
                book_key = IncidentBookKey(partition, ev.model_key).encode()
                report = self.evaluate(ev, book_key, ev.publishing_since_ms or 0, chunks, baseline_for)
                t.incidents[book_key] = report.incidents.to_bytes()
                out = frozenset(published.get(ev.model_key, ()))
                log.warning("evaluation of %s for run %s resumed: %d events already published",
                            ev.model_key, ev.job_run_id, len(out))
                reports.append((ev, report, self.encode(report, out)))
        done = list(repeated)
        for ev, report, events in reports:
            await self.publish_report(ev, events)
            kept = ev.received
            ev = ev.finished(report.counts)
            self.save(partition, ev)
            for source in kept:  # after the done mark: a crash in between leaves parts to expire
                t.evaluations.pop(ev.part_key(partition, source), None)
            done.append(ev)
        if done:  # chunks whose every key is done go (after the done marks, as above)
            gather, drop = gather.finish(ev.model_key for ev in done)
            self.save_gather(partition, gather)
            for source, index in drop:
                t.evaluations.pop(PartsChunkKey(partition, gather.job_run_id, source, index).encode(), None)
        if done:
            await self.report(done)
        return gather

    def kept_parts(self, ev: Evaluation, partition: int, chunks: ChunkReader) -> dict[int, bytes]:
        """The parts of `ev` (on this evaluator's `partition`), by source partition: kept beside
        it, or in a chunk."""
        table, kept = self.m.tables.evaluations, {}
        for source in ev.received:
            raw = table.get(ev.part_key(partition, source))
            if raw is None:
                raise RuntimeError(f"evaluation {ev.job_run_id} {ev.model_key}: the part of "
                                   f"partition {source} is recorded but not kept")
            kept[source] = raw
        for source in ev.from_chunks():
            kept[source] = chunks.part(source, ev.model_key)
        return kept

    async def report(self, done: list[Evaluation]) -> None:
        """The evaluated keys (all of one run), to the job tracker in one message."""
        job_run_id = done[0].job_run_id
        await self.m.topics.runs.send(key=job_run_id.encode(), value=KeysEvaluated(
            job_run_id, tuple((ev.model_key, ev.counts) for ev in done)).to_bytes())

    def evaluate(self, ev: Evaluation, book_key: bytes, evaluated_ms: int, chunks: ChunkReader,
                 baseline_for: BaselineLookup,
                 merged: Mapping[tuple[str, str | None], PartialState] | None = None,
                 verdicts: FeatureVerdicts | None = None) -> KeyReport:
        """The run's evaluation of one key, from the incidents as they were before the run (the
        book replays a run it already applied from its before-state, so a resumed evaluation
        yields the same events). `evaluated_ms` is the publishing mark's time: detectedAt,
        openedAt and resolvedAt are the same in every attempt."""
        started = time.perf_counter()
        raw = self.m.tables.incidents.get(book_key)
        if merged is None:
            merged = ev.merged(self.kept_parts(ev, partition_of(book_key), chunks))
        report = evaluate_key(
            ev.model_key, merged, baseline_for=baseline_for, verdicts=verdicts,
            thresholds=self.m.settings.thresholds(), job_run_id=ev.job_run_id,
            window_start_ms=ev.window_start_ms, window_end_ms=ev.window_end_ms,
            detected_at=format_timestamp(evaluated_ms),
            incidents=IncidentBook.from_bytes(raw) if raw is not None else None,
            policy=self.m.settings.incident_policy())
        if report.stale:
            log.warning("run %s is older than run %s, the last applied to %s: its snapshots are "
                        "published, no incident changes", ev.job_run_id, report.incidents.last_run,
                        ev.model_key)
        log.info("evaluated %s for run %s in %.3fs: %s", ev.model_key, ev.job_run_id,
                 time.perf_counter() - started, report.counts)
        return report

    def encode(self, report: KeyReport, published: AbstractSet[tuple[str, ...]] = frozenset()
               ) -> list[Outgoing]:
        """The report's events still to publish (those not in `published`), in order, each with
        the bytes it goes out as. Called as soon as the key is evaluated, while its documents are
        still in the CPU's caches: encoded after the whole batch (up to EVALUATE_BATCH keys) had
        been evaluated, they no longer were (measured in the worker: 270-330 µs to encode a ~33 KB
        snapshot then, 60 µs to encode it again at once; about 1.5 s of CPU at 5,000 keys). What
        is sent, and when (after the flush of the marks), is `publish_report`'s."""
        events = []
        for kind, doc in report.events:
            value = self.outgoing(kind, doc, published)
            if value is not None:
                events.append((kind, doc, value))
        return events

    def outgoing(self, kind: str, doc: dict[str, Any],
                 published: AbstractSet[tuple[str, ...]] = frozenset()) -> bytes | None:
        """`doc` as published, or None when it already was (`published`, read back after a
        crash). The first of each kind, then one in `outgoing_check_every`, is checked against its
        schema; one off-contract is logged, and published all the same."""
        if published and identity(kind, doc) in published:
            return None
        n = self.published.get(kind, 0)
        self.published[kind] = n + 1
        if n % self.m.settings.outgoing_check_every == 0:  # a sample: the first, then 1 in N
            try:
                self.m.validators.validate(kind, doc)
            except MessageRejected as exc:  # a defect of ours: say so loudly, publish it anyway
                log.error("outgoing %s message off-contract: %s", kind, exc.detail)
        return orjson.dumps(doc)

    async def publish_report(self, ev: Evaluation, events: list[Outgoing]) -> None:
        """Send the encoded events of one key (`encode`), in order, and count them."""
        t, metrics = self.m.topics, self.m.metrics
        topics = {"snapshot": t.snapshot, "drift": t.drift, "degraded": t.degraded,
                  "resolved": t.resolved, "recovered": t.recovered}
        key = ev.model_key.encode()
        tenant, model = ev.model_key.split(":", 1)
        for kind, doc, value in events:
            await topics[kind].send(key=key, value=value)
            if kind == "snapshot":
                if doc["segment"] is None:
                    self.export_gauges(tenant, model, doc)
            elif kind in ("resolved", "recovered"):
                metrics.incidents_resolved.labels("drift" if kind == "resolved" else "degraded").inc()
            elif doc.get("incidentStatus") not in ALERT_STATUSES:
                metrics.incident_updates.labels(kind).inc()
            elif kind == "drift":
                metrics.alerts.labels("drift", doc["severity"]).inc()
            else:
                metrics.alerts.labels("degraded", "degraded").inc()

    def export_gauges(self, tenant: str, model: str, snap: dict[str, Any]) -> None:
        m = self.m.metrics
        for feature, verdict in snap.get("features", {}).items():
            if verdict.get("value") is not None:
                m.set_capped(m.psi, (tenant, model, feature), float(verdict["value"]))
        for metric, verdict in (snap.get("performance") or {}).items():
            if verdict and verdict.get("value") is not None:
                m.set_capped(m.metric_value, (tenant, model, metric), float(verdict["value"]))
        # the outcome clock: label health and expected Brier, per model version
        labels = snap.get("labels") or {}
        version = str(snap.get("modelVersion"))
        health = {"coverage": labels.get("coverage"), "lag_p50_hours": labels.get("lagP50Hours"),
                  "lag_p90_hours": labels.get("lagP90Hours"), "unmatched_outcomes": labels.get("expiredEarlyOutcomes"),
                  "expected_brier": snap.get("expectedBrier")}
        for name, value in health.items():
            if value is not None:
                m.set_capped(m.label_health, (tenant, model, version, name), float(value))
        score = snap.get("prediction") or {}
        if score.get("value") is not None:
            m.set_capped(m.psi, (tenant, model, "prediction"), float(score["value"]))


def register(monitor: Monitor) -> None:
    app, topics = monitor.app, monitor.topics
    evaluator = Evaluator(monitor)

    per_event_agent(app, topics.snapshot_requests, "snapshot",
                    lambda event: on_snapshot_request(monitor, event))
    per_event_agent(app, topics.snapshot_parts, "evaluator", evaluator.handle)
