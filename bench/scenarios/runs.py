"""Scenarios of the weekly run: a crash between fan-out and completion, duplicated inputs and
triggers, and tenant isolation. Each checks the run against the offline oracle
(bench/scenarios/expected.py): every expected event once, with the expected values."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.scenarios.checks import account, compare_state
from bench.scenarios.common import END_MS, OUTPUT_KINDS, ScenarioFailed, progress, run_async, wait_until
from bench.scenarios.context import Context
from bench.scenarios.expected import check_run, expected_run
from bench.scenarios.load import TENANTS, baselines, ingest, stream
from bench.scenarios.service import Service
from model_monitoring.commands.simulate import Message, Scenario
from model_monitoring.schemas.timestamps import format_timestamp
from tests.support.oracle import offline_fold

MANY_TENANTS = TENANTS + ("umbrella", "hooli", "vandelay")  # 12 keys: a run long enough to stop in

# drift in one tenant's models, an unseen category and an accuracy drop in another's: a run
# has alerts to publish, and the tenants differ
ALERTING = Scenario(numeric_shift=("acme:risk-scoring", "globex:risk-scoring"),
                    unseen_category=("globex:churn",), accuracy_drop=("globex:risk-scoring",),
                    early_outcome_rate=0.03)


def prepared(ctx: Context, name: str, records: int, scenario: Scenario = ALERTING,
             messages: list[Message] | None = None, partitions: int = 4,
             tenants: tuple[str, ...] = TENANTS) -> tuple[Service, Any, Any]:
    """A service that has ingested a log whose final state equals the offline fold."""
    refs = baselines()
    messages = messages if messages is not None else stream(records, ctx.seed, scenario, tenants)
    svc = ctx.service(name, partitions=partitions)
    ingest(svc, messages, refs)
    fold = offline_fold(messages, refs)
    actual = svc.final_state()
    compare_state(ctx.result, actual, fold)
    account(ctx.result, actual, fold, svc.dead_letters("features", "outcomes"))
    return svc, fold, refs


def finish_run(ctx: Context, svc: Service, fold: Any, refs: Any, job_run_id: str,
               tenant_ids: list[str] | None = None, label: str = "", settle: float = 3.0) -> dict[str, Any]:
    """Wait for the run's end, let late copies arrive, check it against the oracle."""
    if not svc.wait_completed(job_run_id, 120):
        raise ScenarioFailed(f"run {job_run_id} did not finish:\n{svc.worker.log_tail()}")
    time.sleep(settle)
    published = svc.outputs(job_run_id)
    expected = expected_run(fold, refs, svc.s, job_run_id, END_MS, tenant_ids, svc.expected_incidents)
    check_run(ctx.result, expected, published, label or job_run_id)
    return published


# ---------------------------------------------------------------------- 2. crash during the run
STAGES = ("fan-out", "snapshot part", "published event")


class Throttle:
    """The worker run `on` seconds in every `period` (SIGCONT, SIGSTOP) from a thread, until
    `stop`, which leaves it stopped or running. Why: a run's events go out in one or two produce
    requests (512 KiB batches) and its completion follows within milliseconds on the embedded
    broker, faster than this process sees the first event and stops the worker; slowed down
    five-fold, the run is still between its first event and its completion when the freeze lands
    (each step of the run is the worker's, so the order of its steps is unchanged)."""

    def __init__(self, pid: int, on: float = 0.002, period: float = 0.010) -> None:
        self.pid, self.on, self.off = pid, on, period - on
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            os.kill(self.pid, signal.SIGCONT)
            if self.done.wait(self.on):
                break
            os.kill(self.pid, signal.SIGSTOP)
            self.done.wait(self.off)

    def stop(self, leave_stopped: bool) -> None:
        self.done.set()
        self.thread.join()
        os.kill(self.pid, signal.SIGSTOP if leave_stopped else signal.SIGCONT)


async def freeze_at(svc: Service, pid: int, job_run_id: str, stage: str, timeout: float = 60
                     ) -> bool:
    """Trigger the run and SIGSTOP the worker as soon as the run reaches `stage` (seen on the
    topic the stage writes); True if it got there in time. For the published events the worker
    runs throttled (`Throttle`) from the trigger to the freeze."""
    topic = {"fan-out": svc.s.snapshot_requests_topic, "snapshot part": svc.s.snapshot_parts_topic,
             "published event": svc.s.snapshot_topic}[stage]
    consumer = AIOKafkaConsumer(bootstrap_servers=svc.broker.bootstrap, enable_auto_commit=False,
                                group_id=None, auto_offset_reset="latest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(svc.s.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        throttle: Throttle | None = None
        frozen = False
        try:
            producer = AIOKafkaProducer(bootstrap_servers=svc.broker.bootstrap)
            await producer.start()
            try:
                doc = {"job": "model-monitoring", "jobRunId": job_run_id,
                       "metadata": {"windowEnd": format_timestamp(END_MS)}}
                throttle = Throttle(pid) if stage == "published event" else None
                await producer.send_and_wait(svc.s.trigger_topic, orjson.dumps(doc), key=job_run_id.encode())
            finally:
                await producer.stop()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not frozen:
                batch = await consumer.getmany(timeout_ms=5)
                for records in batch.values():
                    if any(job_run_id.encode() in (r.value or b"") for r in records):
                        frozen = True
                        break
        finally:
            if throttle is not None:
                throttle.stop(leave_stopped=frozen)  # running again unless frozen
            elif frozen:
                os.kill(pid, signal.SIGSTOP)
        return frozen
    finally:
        await consumer.stop()


def kill_at_stages(ctx: Context, svc: Service, fold: Any, refs: Any, name: str, stages: list[str],
                   kill: Callable[[str, str, int, int], None],
                   halt: Callable[[], None] | None = None) -> tuple[int, int]:
    """For each stage: a run, its worker frozen there (SIGSTOP), `halt()` at once (when given),
    the events published by then counted, then `kill(job run, stage, the frozen worker's pid,
    that count)` — which ends the run. A freeze that came after the completion (or never) is
    retried with a new run, up to three times. Returns the kills done and how many of them came
    mid-publication."""
    kills, midway = 0, 0
    for i, stage in enumerate(stages):
        for attempt in range(3):
            job_run_id = f"{name}-{i}-{attempt}"
            pid = svc.worker.process.pid  # type: ignore[union-attr]
            reached = run_async(freeze_at(svc, pid, job_run_id, stage))
            if reached and not svc.completions(job_run_id):
                if halt is not None:
                    halt()
                out = svc.outputs(job_run_id)
                published = sum(len(out[k]) for k in OUTPUT_KINDS)
                midway += published > 0
                kill(job_run_id, stage, pid, published)
                kills += 1
                break
            os.kill(pid, signal.SIGCONT)
            progress(f"  {job_run_id}: the freeze at the {stage} came "
                     f"{'after completion' if reached else 'never'}; again")
            finish_run(ctx, svc, fold, refs, job_run_id, settle=0.5)
    return kills, midway


def crash_during_run(ctx: Context) -> None:
    """Kill the worker at a stage of a run (frozen there with SIGSTOP first, so that the moment is
    known to lie before the completion), restart it, and check the run against the oracle. A
    freeze that came too late is retried with a new run, up to three times."""
    r = ctx.result
    records = 8_000 if ctx.quick else 40_000
    stages = ["published event"] if ctx.quick else list(STAGES)
    r.load = f"{records:,} records, 12 keys"
    svc, fold, refs = prepared(ctx, "crashrun", records, tenants=MANY_TENANTS)
    def kill(job_run_id: str, stage: str, pid: int, published: int) -> None:
        progress(f"  killed at the {stage} of {job_run_id}, {published} events out")
        svc.start_worker(0)
        finish_run(ctx, svc, fold, refs, job_run_id)

    # SIGKILL the stopped process at once: it dies where it stood
    kills, midway = kill_at_stages(ctx, svc, fold, refs, "crash-run", stages, kill,
                                   halt=lambda: svc.worker.kill())
    r.check(kills == len(stages), f"{len(stages) - kills} stage(s) never killed before completion")
    r.faults = f"{kills} SIGKILL between fan-out and completion, {midway} mid-publication"
    r.notes["kills"], r.notes["stages"] = kills, stages


# ---------------------------------------------------------------------- 4. duplicates
def twice(messages: list[Message], rng: random.Random) -> list[Message]:
    """A producer retry storm: every message again, a few to a few hundred messages later."""
    slots: list[list[Message]] = [[m] for m in messages]
    for i, m in enumerate(messages):
        j = min(len(messages) - 1, i + rng.randint(0, 300))
        slots[j].append(m)
    return [m for slot in slots for m in slot]


def duplicates(ctx: Context) -> None:
    r = ctx.result
    records = 5_000 if ctx.quick else 50_000
    once = stream(records, ctx.seed + 4, ALERTING)
    doubled = twice(once, random.Random(ctx.seed))
    r.load = f"{records:,} records"
    svc, fold, refs = prepared(ctx, "dups", records, messages=doubled)
    refs_fold = offline_fold(once, refs)
    r.check(fold.comparable() == refs_fold.comparable(), "oracle: the doubled log folds differently")
    svc.publish_baselines(refs)  # the baselines twice as well
    job_run_id = "dup-run"
    svc.trigger(job_run_id)
    svc.trigger(job_run_id)
    wait_until(lambda: bool(svc.completions(job_run_id)), 60)
    svc.trigger(job_run_id)  # and once more after it completed
    finish_run(ctx, svc, fold, refs, job_run_id, settle=3.0)
    r.faults = f"{len(doubled) - len(once):,} duplicate messages, trigger x3"


# ---------------------------------------------------------------------- 8. tenant isolation
def tenant_isolation(ctx: Context) -> None:
    r = ctx.result
    records = 6_000 if ctx.quick else 60_000
    r.load = f"{records:,} records, 3 tenants"
    r.faults = "run for one tenant next to tenants with drift"
    svc, fold, refs = prepared(ctx, "isolation", records)
    svc.trigger("only-acme", ["acme"])
    only = finish_run(ctx, svc, fold, refs, "only-acme", ["acme"], settle=1.0)
    svc.trigger("all-tenants")
    every = finish_run(ctx, svc, fold, refs, "all-tenants", settle=1.0)
    leaked = [d for kind in OUTPUT_KINDS for d in only[kind] if d["tenantId"] != "acme"]
    r.check(not leaked, f"{len(leaked)} events of the acme run are about other tenants")
    text = b"".join(orjson.dumps(d) for kind in only for d in only[kind])
    others = [t for t in ("globex", "initech") if t.encode() in text]
    r.check(not others, f"the acme run's events name {others}")

    def acme(events: dict[str, list[dict[str, Any]]]) -> dict[tuple[Any, ...], Any]:
        return {(k, d["modelId"], d["modelVersion"], d["segment"], d.get("feature") or d.get("metric")):
                {f: v for f, v in d.items() if f not in ("jobRunId", "eventId", "detectedAt", "incidentStatus")}
                for k in OUTPUT_KINDS for d in events[k] if d["tenantId"] == "acme"}

    r.check(acme(only) == acme(every), "acme's events differ between the acme run and the all-tenant run")
    # the same week again: acme's incidents, opened by the acme run, go on under the same ids
    statuses = {(d["tenantId"], d["incidentStatus"]) for k in ("drift", "degraded") for d in every[k]}
    r.check(any(status == "ongoing" for tenant, status in statuses if tenant == "acme")
            and all(status == "ongoing" for tenant, status in statuses if tenant == "acme"),
            f"acme's incidents in the all-tenant run are not all ongoing: {sorted(statuses)}")
    r.check(all(status == "opened" for tenant, status in statuses if tenant != "acme"),
            f"the other tenants' incidents in the all-tenant run are not all opened: {sorted(statuses)}")
    r.check(any(d["tenantId"] != "acme" for k in OUTPUT_KINDS for d in every[k]),
            "the all-tenant run has no other tenant: the comparison proves nothing")
