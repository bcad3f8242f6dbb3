"""The weekly run's front half: triggers (topic, crontab on the leader, HTTP — one path), and
the job tracker that fans out, waits for every partition and key, and completes or fails."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from faust.types import EventT

from model_monitoring.agents.published import terminal_published
from model_monitoring.schemas.rejection import MessageRejected
from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.schemas.validation import decode_json
from model_monitoring.streams.app import Monitor
from model_monitoring.streams.dlq import DeadLetter, send_dead_letters
from model_monitoring.streams.per_event import per_event_agent
from model_monitoring.streams.producer_buffer import flush_durably
from model_monitoring.streams.topics import evaluator_partition
from model_monitoring.tables import job_run as tracker
from model_monitoring.tables.job_run import Complete, Evaluate, Fail, FanOut, JobRun
from model_monitoring.tables.job_tracker import outbox_action, run_summary, track, with_outbox
from model_monitoring.tables.keys import RunKey, RunStatusKey, decode_job_runs_key
from model_monitoring.tables.run_messages import (
    EVALUATE_BATCH,
    EvaluateKeys,
    SnapshotRequest,
    StartRun,
    decode_run_message,
)
from model_monitoring.tables.trigger import JOB_NAME, cron_job_run_id, derived_job_run_id, plan_run

log = logging.getLogger("model_monitoring.run")
runbook_log = logging.getLogger("model_monitoring.job")


def now_ms() -> int:
    return int(time.time() * 1000)


def trigger_message(job_run_id: str, tenant_ids: list[str] | None, source: str,
                    window_end: str | None = None) -> bytes:
    """The one trigger shape every source publishes (the HTTP route and the crontab too)."""
    metadata: dict[str, Any] = {"source": source}
    if tenant_ids is not None:
        metadata["tenantIds"] = tenant_ids
    if window_end is not None:
        metadata["windowEnd"] = window_end
    return orjson.dumps({"job": JOB_NAME, "jobRunId": job_run_id, "metadata": metadata,
                         "triggeredAt": format_timestamp(now_ms())})


async def publish_trigger(monitor: Monitor, job_run_id: str, tenant_ids: list[str] | None,
                          source: str) -> None:
    await monitor.topics.trigger.send(key=job_run_id.encode(),
                                      value=trigger_message(job_run_id, tenant_ids, source))


async def on_trigger(monitor: Monitor, event: EventT) -> None:
    """Validate; other jobs are ignored (and counted); start the run on the tracker's topic."""
    msg, m, s = event.message, monitor.metrics, monitor.settings
    try:
        doc = decode_json(msg.value, s.max_message_bytes)
        job = doc.get("job") if isinstance(doc, dict) else None
        if isinstance(job, str) and job != JOB_NAME:  # another job's trigger, whatever its shape
            m.triggers_ignored.inc()
            if s.dlq_other_jobs:
                raise MessageRejected("unknown_job", f"job {job[:80]!r} is not {JOB_NAME}")
            return
        monitor.validators.validate("trigger", doc)
        assert isinstance(doc, dict)
    except MessageRejected as exc:
        await send_dead_letters(monitor.topics.dlq_for(monitor.topics.trigger), [DeadLetter(
            msg.topic, msg.partition, msg.offset, msg.key, msg.value, exc.reason, exc.detail)], m)
        return
    source = str((doc.get("metadata") or {}).get("source") or "topic")
    job_run_id = doc.get("jobRunId") or derived_job_run_id(msg.topic, msg.partition, msg.offset)
    try:
        run = plan_run(doc, job_run_id=job_run_id, now_ms=now_ms(), window_ms=s.window_ms,
                       bucket_ms=s.bucket_ms, deadline_ms=int(s.run_deadline_seconds * 1000),
                       partitions=s.partitions, source=source)
    except MessageRejected as exc:
        await send_dead_letters(monitor.topics.dlq_for(monitor.topics.trigger), [DeadLetter(
            msg.topic, msg.partition, msg.offset, msg.key, msg.value, exc.reason, exc.detail)], m)
        return
    m.job_triggers.labels(JOB_NAME, source).inc()
    log.info("trigger accepted: jobRunId=%s source=%s tenants=%s", job_run_id, source,
             run.tenant_ids if run.tenant_ids is not None else "all")
    await monitor.topics.runs.send(key=job_run_id.encode(), value=StartRun(run).to_bytes())


class Tracker:
    """Applies runs-topic messages to the `job_runs` table (`tables/job_tracker.py` decides) and
    performs the actions."""

    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor

    async def handle(self, event: EventT) -> None:
        message = decode_run_message(event.message.value or b"")
        table = self.m.tables.job_runs
        await self.settle_outbox(RunKey(event.message.partition, message.job_run_id))
        step = track(message, event.message.partition, event.message.offset, table.get, now_ms())
        if step.note:
            (log.warning if step.run is None else log.info)(step.note)
        if step.run is None or not step.applied:
            return
        for key, value in step.writes.items():
            table[key] = value
        await self.apply(step.key, step.run, step.actions)

    async def apply(self, key: RunKey, run: JobRun, actions: list[tracker.Action]) -> None:
        """Perform the idempotent actions, save; a completion or failure goes through the run's
        outbox: saved and flushed before it is sent, cleared after."""
        run, actions, terminal = with_outbox(run, actions, now_ms())
        await self.perform(run, actions)
        self.save(key, run)
        if terminal is not None:
            await flush_durably(self.m.app)  # the outbox is durable before the event goes out
            await self.perform(run, [terminal])
            self.save(key, replace(run, outbox=None))

    async def settle_outbox(self, key: RunKey) -> None:
        """A run saved with a full outbox was interrupted around sending it: send it unless a
        read-back of its topic finds it already published."""
        raw = self.m.tables.job_runs.get(key.encode())
        run = JobRun.from_bytes(raw) if raw is not None else None
        action = outbox_action(run) if run is not None else None
        if run is None or action is None or run.outbox is None:
            return
        s = self.m.settings
        topic = s.completed_topic if isinstance(action, Complete) else s.failed_topic
        if await terminal_published(s, topic, run.job_run_id, int(run.outbox["sinceMs"])):
            log.warning("run %s: its %s event was already published before the restart; not again",
                        run.job_run_id, run.outbox["kind"])
        else:
            log.warning("run %s: publishing its %s event, interrupted by a restart",
                        run.job_run_id, run.outbox["kind"])
            await self.perform(run, [action])
        self.save(key, replace(run, outbox=None))

    def save(self, key: RunKey, run: JobRun) -> None:
        self.m.tables.job_runs[key.encode()] = run.to_bytes()
        summary = run_summary(run, key.partition, self.m.tables.job_runs.get)
        self.m.tables.run_status[RunStatusKey(run.job_run_id).encode()] = orjson.dumps(summary)

    async def perform(self, run: JobRun, actions: list[tracker.Action]) -> None:
        t, s = self.m.topics, self.m.settings
        for action in actions:
            if isinstance(action, FanOut):
                request = SnapshotRequest.for_run(run).to_bytes()
                for p in range(s.partitions):
                    await t.snapshot_requests.send(key=run.job_run_id.encode(), value=request, partition=p)
            elif isinstance(action, Evaluate):
                by_evaluator: dict[int, list[tuple[str, tuple[int, ...]]]] = {}
                for model_key, partitions in sorted(action.keys.items()):
                    by_evaluator.setdefault(evaluator_partition(model_key, s.partitions), []).append(
                        (model_key, tuple(partitions)))
                for partition, keys in sorted(by_evaluator.items()):
                    for i in range(0, len(keys), EVALUATE_BATCH):
                        await t.snapshot_parts.send(key=run.job_run_id.encode(), partition=partition,
                                                    value=EvaluateKeys(run.job_run_id, tuple(keys[i:i + EVALUATE_BATCH]),
                                                                       run.window_start_ms, run.window_end_ms).to_bytes())
            elif isinstance(action, Complete):
                await self.complete(run, dict(action.payload))
            elif isinstance(action, Fail):
                await self.fail(run, dict(action.payload))

    async def complete(self, run: JobRun, payload: dict[str, Any]) -> None:
        payload["completedAt"] = format_timestamp(int(payload.pop("completedAtMs")))
        self.m.validators.validate("completed", payload)
        await self.m.topics.completed.send(key=run.job_run_id.encode(), value=orjson.dumps(payload))
        m = self.m.metrics
        m.job_duration.labels(JOB_NAME).observe(payload["durationMs"] / 1000.0)
        m.job_runs.labels("completed").inc()
        runbook_log.info("model-monitoring completed", extra={"fields": {
            "tenants": payload["tenants"], "driftChecked": payload["driftChecked"],
            "performanceChecked": payload["performanceChecked"],
            "driftDetected": payload["driftDetected"],
            "performanceDegraded": payload["performanceDegraded"],
            "jobRunId": run.job_run_id, "durationMs": payload["durationMs"]}})

    async def fail(self, run: JobRun, payload: dict[str, Any]) -> None:
        payload["failedAt"] = format_timestamp(int(payload.pop("failedAtMs")))
        self.m.validators.validate("failed", payload)
        await self.m.topics.failed.send(key=run.job_run_id.encode(), value=orjson.dumps(payload))
        self.m.metrics.job_runs.labels("failed").inc()
        runbook_log.error("model-monitoring failed", extra={"fields": {
            "tenants": list(run.tenant_ids or ()),
            "driftChecked": run.totals["driftChecked"],
            "performanceChecked": run.totals["performanceChecked"], "jobRunId": run.job_run_id,
            "durationMs": (run.finished_ms or now_ms()) - run.started_ms, "error": run.error}})

    async def check_deadlines(self) -> None:
        """Fail the runs this worker tracks that passed their deadline."""
        for raw_key, raw in list(self.m.tables.job_runs.items()):
            key = decode_job_runs_key(raw_key)
            if not isinstance(key, RunKey):
                continue  # a report or an evaluation, not a run
            run = JobRun.from_bytes(raw)
            if run.status != "running":
                continue
            if run.outbox is not None:
                await self.settle_outbox(key)
                continue
            run, actions = tracker.check_deadline(run, now_ms())
            if actions:
                await self.apply(key, run, actions)


def register(monitor: Monitor) -> None:
    app, s, topics = monitor.app, monitor.settings, monitor.topics
    tracker_shell = Tracker(monitor)

    per_event_agent(app, topics.trigger, "triggers", lambda event: on_trigger(monitor, event))
    per_event_agent(app, topics.runs, "job-tracker", tracker_shell.handle)

    @app.timer(5.0, name="run-deadlines")
    async def deadlines() -> None:
        await tracker_shell.check_deadlines()

    if s.cron_enabled:
        @app.crontab(s.cron, timezone=ZoneInfo(s.cron_timezone), on_leader=True)
        async def weekly() -> None:
            job_run_id = cron_job_run_id(s.cron, datetime.now(ZoneInfo(s.cron_timezone)))
            log.info("crontab %r fired: jobRunId=%s", s.cron, job_run_id)
            await publish_trigger(monitor, job_run_id, None, "cron")
