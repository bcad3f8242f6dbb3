"""Scenarios of the broker itself killed with SIGKILL and started again on its log (issue 10):
during ingest, and during a weekly run between the trigger and the completion. Only a durable
broker can show them (Apache Kafka; the embedded broker's restart is a new, empty broker). The
checks are those of a worker crash: the state equals the offline fold and every record is
accounted for; the run completes once and publishes every expected event once."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from typing import TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench.scenarios.common import ScenarioFailed, progress, run_async, wait_until
from bench.scenarios.context import Context
from bench.scenarios.faults import alive, consumed, start_ingest, verify
from bench.scenarios.runs import MANY_TENANTS, STAGES, finish_run, kill_at_stages, prepared
from bench.scenarios.service import Service
from model_monitoring.commands.harness import WorkerProcess

T = TypeVar("T")


async def leaders_elected(bootstrap: str) -> bool:
    """Every partition of every topic has a leader again (a restarted Kafka listens before it
    has; until then its metadata lists topics with fewer partitions, or none, and a lag read
    from them says 0)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    try:
        await admin.start()
        described = await admin.describe_topics(await admin.list_topics())
    except (KafkaError, OSError):
        return False
    finally:
        await admin.close()
    return all(not d["error_code"] and d["partitions"]
               and all(p["leader"] >= 0 and not p["error_code"] for p in d["partitions"])
               for d in described)


def restart_broker(ctx: Context, down: float) -> float:
    """SIGKILL the broker, leave it down `down` seconds, start it again on the same log and
    ports; returns the seconds until it served every partition again."""
    ctx.broker.kill()
    time.sleep(down)
    started = time.monotonic()
    ctx.broker.start()
    if not wait_until(lambda: run_async(leaders_elected(ctx.broker.bootstrap)), 120, 0.5):
        raise ScenarioFailed("the restarted broker has partitions without a leader after 120 s")
    seconds = time.monotonic() - started
    ctx.result.notes.setdefault("broker_restart_seconds", []).append(round(seconds, 1))
    return seconds


def revive_exited(ctx: Context, svc: Service) -> int:
    """Start again every worker that exited (a worker is expected to ride out a broker restart;
    one that does not is counted and its last words kept in the row's notes)."""
    revived = 0
    for index, worker in list(svc.workers.items()):
        if not alive(worker):
            code = worker.process.returncode if worker.process is not None else None
            last = worker.log_tail(3).replace("\n", " | ")[-300:]
            ctx.result.notes.setdefault("worker_exits", []).append(f"worker {index} exit {code}: {last}")
            progress(f"  worker {index} exited ({code}); started again")
            svc.start_worker(index, wait=False)
            revived += 1
    return revived


def asked(ask: Callable[[], T], tries: int = 20) -> T:
    """`ask()` (the group's lag, or whether it consumed everything), asked again while a
    restarted broker still loads its groups."""
    for attempt in range(tries):
        try:
            return ask()
        except Exception as exc:  # noqa: BLE001 - retried, then raised
            if attempt + 1 == tries:
                raise
            progress(f"  lag unknown yet: {type(exc).__name__}")
            time.sleep(1.0)
    raise AssertionError("unreachable")


def completed_reviving(ctx: Context, svc: Service, job_run_id: str, timeout: float = 180) -> None:
    """Until the run has completed (or failed), restarting exited workers meanwhile."""
    def finished() -> bool:
        revive_exited(ctx, svc)
        return svc.wait_completed(job_run_id, 1.0)

    if not wait_until(finished, timeout, 0.5):
        raise ScenarioFailed(f"run {job_run_id} did not finish:\n{svc.worker.log_tail()}")


def consumed_until_lag_zero(ctx: Context, svc: Service, timeout: float, max_restarts: int = 3) -> None:
    """Until the group has committed every input message, restarting exited workers; more than
    `max_restarts` restarts is a crash loop, a failure."""
    deadline = time.monotonic() + timeout
    restarts = 0
    while time.monotonic() < deadline:
        restarts += revive_exited(ctx, svc)
        if restarts > max_restarts:
            raise ScenarioFailed(f"the worker crash-loops after the broker restart ({restarts} exits):\n"
                                 + svc.worker.log_tail(15))
        if asked(svc.consumed):
            return
        time.sleep(1.0)
    raise ScenarioFailed(f"input lag {svc.input_lag()} after {timeout:.0f}s:\n" + svc.worker.log_tail(15))


# ---------------------------------------------------------------------- broker killed mid-ingest
def broker_killed_mid_ingest(ctx: Context) -> None:
    """kill -9 the broker after a random share of the log was consumed, restart it on its log;
    the worker goes on (restarted only if it exited) and ends with the offline fold's state."""
    r = ctx.result
    records, kills = (5_000, 1) if ctx.quick else (100_000, 3)
    rng = random.Random(ctx.seed + 9)
    r.load = f"{records:,} records"
    svc = ctx.service("brokerkill", partitions=4)
    messages, refs = start_ingest(ctx, svc, records, 9)
    total = len(messages)
    done, before = 0, 0.0  # records consumed by worker processes that exited
    for k in range(kills):
        worker = svc.worker
        # a random moment in this kill's share of the log (consumed counts per process)
        low, high = k / kills, (k + 1) / kills
        target = rng.uniform(low + 0.1 * (high - low), low + 0.7 * (high - low)) * total
        def reached(w: WorkerProcess = worker, t: float = target, b: float = before) -> bool:
            return b + consumed(w) >= t or not alive(w)

        wait_until(reached, 600, 0.05)
        if not alive(worker):
            raise ScenarioFailed(f"the worker died by itself:\n{worker.log_tail()}")
        # both read before the kill: read after the restart, the lag races the worker, which may
        # take in the rest of a small log while the broker still elects leaders (and can come out
        # too high while offset requests meet NotLeaderForPartition)
        lag = asked(svc.input_lag)
        at = before + consumed(worker)
        down = rng.uniform(0.5, 5.0)
        seconds = restart_broker(ctx, down)
        moment = f"after {at:,.0f} of {total:,} records (lag {lag:,}), down {down:.1f}s + {seconds:.0f}s restart"
        progress(f"  broker SIGKILL {k + 1}/{kills} {moment}")
        r.notes.setdefault("kill_moments", []).append(moment)
        if r.check(lag > 0 and at < total, f"broker kill {k + 1} came after the ingest ({moment})"):
            done += 1
        if k + 1 < kills:  # the next kill needs the worker consuming again
            if revive_exited(ctx, svc):
                before = at
            def moved_on(w: WorkerProcess = svc.worker, a: float = at, b: float = before) -> bool:
                return b + consumed(w) > a or asked(svc.consumed)

            wait_until(moved_on, 180, 0.2)
    consumed_until_lag_zero(ctx, svc, 900 if not ctx.quick else 240)
    exits = len(r.notes.get("worker_exits", []))
    r.faults = f"{done} broker SIGKILL mid-ingest + restart on its log; {exits} worker exits"
    r.notes["kills"] = done
    verify(ctx, svc, messages, refs, timeout=60)


# ---------------------------------------------------------------------- broker killed mid-run
def broker_killed_mid_run(ctx: Context) -> None:
    """kill -9 the broker at a stage of a weekly run (the worker frozen with SIGSTOP there for the
    moment of the kill, so that it lies between the trigger and the completion), restart it;
    the run completes once, every expected event once. A stage reached too late is retried with
    a new run, up to three times."""
    r = ctx.result
    records = 8_000 if ctx.quick else 40_000
    stages = ["published event"] if ctx.quick else list(STAGES)
    rng = random.Random(ctx.seed + 10)
    r.load = f"{records:,} records, 12 keys"
    svc, fold, refs = prepared(ctx, "brokerkillrun", records, tenants=MANY_TENANTS)
    def kill(job_run_id: str, stage: str, pid: int, published: int) -> None:
        down = rng.uniform(0.5, 5.0)
        ctx.broker.kill()
        os.kill(pid, signal.SIGCONT)  # the worker runs on into a dead broker
        restart_broker(ctx, down)
        progress(f"  broker killed at the {stage} of {job_run_id}, {published} events out, down {down:.1f}s")
        completed_reviving(ctx, svc, job_run_id)
        finish_run(ctx, svc, fold, refs, job_run_id, settle=5.0)

    kills, midway = kill_at_stages(ctx, svc, fold, refs, "broker-kill", stages, kill)
    r.check(kills == len(stages), f"{len(stages) - kills} stage(s) never reached before completion")
    exits = len(r.notes.get("worker_exits", []))
    r.faults = (f"{kills} broker SIGKILL between trigger and completion, {midway} mid-publication; "
                f"{exits} worker exits")
    r.notes["kills"], r.notes["stages"] = kills, stages
