"""Scenarios of infrastructure faults during ingest: workers killed with SIGKILL, a worker
leaving and rejoining the group, the broker stalled with SIGSTOP. The final state must equal
the offline fold of the log exactly, every malformed message in the DLQ, no partition behind."""

from __future__ import annotations

import random
import time
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from bench.scenarios.checks import account, compare_state
from bench.scenarios.common import ScenarioFailed, progress, wait_until
from bench.scenarios.context import Context
from bench.scenarios.load import baselines, stream
from bench.scenarios.service import Service
from model_monitoring.commands.harness import WorkerProcess
from model_monitoring.commands.simulate import Message, Scenario
from tests.support.oracle import offline_fold

# the rebalance scenario: the first part of its log is produced in 40 pieces (of at least this
# many messages), and the leaver killed once it has consumed a twentieth of that part (at least
# this many input records)
REBALANCE_PIECE = 150
REBALANCE_KILL_AFTER = 200

# what real traffic brings besides the faults: duplicates, early outcomes, malformed messages
NOISY = Scenario(duplicate_rate=0.02, early_outcome_rate=0.05, malformed_rate=0.005)


def consumed(worker: WorkerProcess, *topics: str) -> float:
    """Input records this worker process has consumed, of `topics` when given (0 when it does
    not answer)."""
    name = "model_monitoring_records_consumed_total"
    try:
        return (sum(worker.metric(name, topic=topic) for topic in topics) if topics
                else worker.metric(name))
    except OSError:
        return 0.0


def partitions_of(messages: list[Message], partitions: int) -> set[int]:
    """The partitions the producer (Java's murmur2 on the key, aiokafka's default) sends
    these keyed messages to."""
    every = list(range(partitions))
    return {DefaultPartitioner()(m.key, every, every) for m in messages if m.key is not None}


def alive(worker: WorkerProcess) -> bool:
    return worker.process is not None and worker.process.poll() is None


def verify(ctx: Context, svc: Service, messages: list[Message], refs: Any, timeout: float) -> None:
    """Lag 0 on every input partition, the state equals the offline fold, all accounted for."""
    if not svc.wait_consumed(timeout):
        raise ScenarioFailed(f"input lag {svc.input_lag()} after {timeout}s:\n"
                             + "\n".join(w.log_tail(8) for w in svc.workers.values()))
    expected = offline_fold(messages, refs)
    actual = svc.final_state()
    compare_state(ctx.result, actual, expected)
    account(ctx.result, actual, expected, svc.dead_letters("features", "outcomes"))
    ctx.result.check(expected.malformed > 0, "the log holds no malformed message")


def start_ingest(ctx: Context, svc: Service, records: int, seed_offset: int,
                 workers: int = 1) -> tuple[list[Message], Any]:
    refs = baselines()
    messages = stream(records, ctx.seed + seed_offset, NOISY)
    svc.publish_baselines(refs)
    for i in range(workers):
        svc.start_worker(i, wait=False)
    for i in range(workers):
        svc.workers[i].wait_ready(timeout=180)
    # the group splits the baselines topic; every worker's global table gets them all
    svc.wait_baselines(list(svc.workers.values()), len(refs))
    progress(f"  producing {len(messages):,} messages")
    svc.produce(messages)
    return messages, refs


# ---------------------------------------------------------------------- 1. crash during ingest
def crash_during_ingest(ctx: Context) -> None:
    r = ctx.result
    records, kills = (5_000, 1) if ctx.quick else (200_000, 5)
    rng = random.Random(ctx.seed + 1)
    r.load = f"{records:,} records"
    svc = ctx.service("crashingest", partitions=4)
    messages, refs = start_ingest(ctx, svc, records, 1)
    total = len(messages)
    done = 0
    # one kill (full variant) lands while the restarted worker starts up and recovers its tables
    early = rng.randrange(1, kills) if kills > 1 else -1
    for k in range(kills):
        worker = svc.worker
        if k == early:
            time.sleep(rng.uniform(0.5, 5.0))
            moment = "during start-up/recovery"
        else:
            worker.wait_ready(timeout=180)
            # a random moment: after a random share of the log this incarnation consumed
            target = rng.uniform(0.1, 0.7 if ctx.quick else 0.26) * total
            def reached(w: WorkerProcess = worker, t: float = target) -> bool:
                return consumed(w) >= t or not alive(w)

            wait_until(reached, 600, 0.05)
            if not alive(worker):
                raise ScenarioFailed(f"the worker died by itself:\n{worker.log_tail()}")
            time.sleep(rng.uniform(0, 0.2))
            at = consumed(worker)
            moment = f"after {at:,.0f} records of this incarnation"
        worker.kill()
        lag = svc.input_lag()
        if lag == 0:
            r.problems.append(f"kill {k + 1} came after the ingest")
        else:
            done += 1
        progress(f"  SIGKILL {k + 1}/{kills} {moment}, lag {lag:,}")
        r.notes.setdefault("kill_moments", []).append(moment)
        svc.start_worker(0, wait=False)
    svc.worker.wait_ready(timeout=180)
    r.faults = f"{done} SIGKILL at random moments + restart"
    r.notes["kills"] = done
    verify(ctx, svc, messages, refs, timeout=900 if not ctx.quick else 180)


# ---------------------------------------------------------------------- 3. rebalance
def rebalance(ctx: Context) -> None:
    """Two workers share the partitions; the log arrives in three parts: while both run, while
    one is dead (after the group noticed), and after it came back."""
    r = ctx.result
    records = 6_000 if ctx.quick else 100_000
    r.load = f"{records:,} records, 2 workers"
    # batches of 200 (not 2,000): the consumed count the kill waits on rises in steps of a
    # batch, and in the quick variant one batch of 2,000 could hold the leaver's whole share
    # (~1,800), leaving no moment "mid-stream" to kill it at
    svc = ctx.service("rebalance", partitions=4, extra={"MODEL_MONITORING_BATCH_SIZE": "200"})
    refs = baselines()
    messages = stream(records, ctx.seed + 3, NOISY)
    first, second, third = (messages[:len(messages) * 6 // 10],
                            messages[len(messages) * 6 // 10:len(messages) * 8 // 10],
                            messages[len(messages) * 8 // 10:])
    svc.publish_baselines(refs)
    for i in (0, 1):
        svc.start_worker(i, wait=False)
    for i in (0, 1):
        svc.workers[i].wait_ready(timeout=180)
    svc.wait_baselines(list(svc.workers.values()), len(refs))
    survivor, leaver = svc.workers[0], svc.workers[1]
    # mid-stream by construction: `first` goes in pieces, and the leaver is killed once it has
    # folded some of its share while pieces are still to come; the rest of `first` then lands on
    # its partitions too (checked: it reaches every partition) while the group still counts the
    # dead worker a member. (Killing it after a count of its consumption was a race: a quick
    # leaver could fold its whole share between two reads, and the share was an estimate.)
    size, kill_after = max(REBALANCE_PIECE, len(first) // 40), max(REBALANCE_KILL_AFTER, len(first) // 20)
    pieces = [first[i:i + size] for i in range(0, len(first), size)]
    # the features and outcomes topics only: not the baselines every worker reads, nor the
    # forwards of the repartition topics
    inputs = (svc.topic_of("features"), svc.topic_of("outcomes"))
    at, after_kill = 0.0, list[Message]()
    for n, piece in enumerate(pieces):
        svc.produce(piece)
        if alive(leaver) and (at := consumed(leaver, *inputs)) >= kill_after:
            leaver.kill()
            after_kill = [m for later in pieces[n + 1:] for m in later]
    if alive(leaver):  # it never folded that much while `first` was produced: kill it now
        wait_until(lambda: consumed(leaver, *inputs) >= kill_after, 300, 0.05)
        at = consumed(leaver, *inputs)
        leaver.kill()
    reached = partitions_of(after_kill, svc.s.partitions)
    r.check(reached == set(range(svc.s.partitions)),
            f"worker 2 was not killed mid-stream: {len(after_kill):,} messages of the first part came "
            f"after the kill, on partitions {sorted(reached)} of {svc.s.partitions}")
    progress(f"  SIGKILL worker 2 after {at:,.0f} input records, {len(after_kill):,} messages of the "
             "first part still to come")
    # the group notices (session timeout), the survivor takes every partition
    took_over = wait_until(svc.consumed, 180, 1.0)
    r.check(took_over, "the survivor did not take over the dead worker's partitions")
    svc.produce(second)
    wait_until(svc.consumed, 120, 1.0)
    svc.start_worker(1)
    progress("  worker 2 is back")
    svc.produce(third)
    r.faults = "1 of 2 workers SIGKILLed mid-stream, rejoins"
    verify(ctx, svc, messages, refs, timeout=600 if not ctx.quick else 180)
    r.check(consumed(svc.workers[1]) > 0, "the returned worker consumed nothing: no rebalance back")
    r.check(survivor.process is not None and survivor.process.poll() is None,
            "the surviving worker died")


# ---------------------------------------------------------------------- 6. broker stall
def broker_stall(ctx: Context) -> None:
    r = ctx.result
    records = 8_000 if ctx.quick else 60_000
    r.load = f"{records:,} records"
    svc = ctx.service("stall", partitions=4)
    # past the worker's session timeout where it is set (the Kafka tier: 10 s), so that the quick
    # variant too can end the worker's session: a rejoin with its table recovery follows (in about
    # a third of the full runs; whether the broker expires the session first or answers the
    # waiting heartbeat first is a race), where a worker behind lost records before
    # (streams/transport.py "paused means paused", streams/write_gate.py)
    session = svc.s.broker_session_timeout_seconds
    stall = 20.0 if not ctx.quick else 3.0 if session is None else session + 2.0
    messages, refs = start_ingest(ctx, svc, records, 6)
    worker = svc.worker
    pid = worker.process.pid  # type: ignore[union-attr]
    total = len(messages)
    wait_until(lambda: consumed(worker) >= total * 0.2, 300, 0.02)
    ctx.broker.pause()
    try:
        at = consumed(worker)
        progress(f"  broker SIGSTOP for {stall:.0f}s after {at:,.0f}/{total:,} records")
        time.sleep(stall)
    finally:
        ctx.broker.resume()
    r.check(at < total, "the stall came after the ingest")
    r.faults = f"broker SIGSTOP {stall:.0f}s mid-stream, SIGCONT"
    verify(ctx, svc, messages, refs, timeout=300 if not ctx.quick else 120)
    process = worker.process
    alive = process is not None and process.poll() is None
    r.check(alive and process is not None and process.pid == pid, "the worker did not survive the stall by itself")
    r.check(worker.get("/readyz", timeout=5)[0] == 200 if alive else False, "worker not ready")
