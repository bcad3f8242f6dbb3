"""Compaction (issue 10): Kafka compacts the tables' changelogs and the baselines topic for real
(tiny segments, a low dirty ratio), then a fresh worker — a new machine: an empty data dir, the
same app id — rebuilds its tables from the compacted changelogs alone. Its local partials must
equal one offline fold of the log, and a weekly run on it must publish the oracle's events.
Only a durable broker can show it: the embedded broker never compacts."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import cast

import orjson
from aiokafka import AIOKafkaConsumer
from rocksdict import AccessType, Options, Rdict

from bench.scenarios.checks import account, compare_state
from bench.scenarios.common import END_MS, ScenarioFailed, progress, run_async, wait_until
from bench.scenarios.context import Context
from bench.scenarios.expected import check_run, expected_run
from bench.scenarios.faults import consumed
from bench.scenarios.load import baselines, stream
from bench.scenarios.runs import ALERTING
from bench.scenarios.service import read_topics
from model_monitoring.commands.harness import topic_partitions
from model_monitoring.commands.simulate import Message
from tests.support.oracle import Fold, offline_fold, stream_state

# topic configs of every compacted topic of the service: a segment closes at the first write
# after a second, and any superseded record makes a log worth cleaning
COMPACTING = {"segment.ms": "1000", "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0"}
CHANGELOGS = ("partials", "join_log", "baselines")


async def log_figures(bootstrap: str, topics: list[str]) -> dict[str, dict[str, int]]:
    """Per topic: records written (the end offsets: no transactions, one offset per record), the
    log start offsets, and the records still in the log (what a recovery reads)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topics)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    present = await read_topics(bootstrap, topics, timeout=60)
    return {t: {"written": sum(v for tp, v in ends.items() if tp.topic == t),
                "earliest": sum(v for tp, v in starts.items() if tp.topic == t),
                "present": len(present[t])} for t in topics}


def compacted(figures: dict[str, int]) -> bool:
    return figures["present"] < figures["written"]


def local_partials(data_dir: Path) -> Fold:
    """The partials a stopped worker holds in its RocksDB databases, summed over partitions."""
    table: dict[bytes, bytes] = {}
    paths = sorted(data_dir.rglob("partials-*.db"))
    if not paths:
        raise ScenarioFailed(f"no partials database under {data_dir}")
    for path in paths:
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            # every database also holds faust's own key: the changelog offset it has applied
            items = cast(Iterable[tuple[bytes, bytes]], db.items())  # raw mode: bytes keys and values
            table.update((bytes(k), bytes(v)) for k, v in items if not bytes(k).startswith(b"__faust"))
        finally:
            db.close()
    return stream_state(table)


def rounds_of(messages: list[Message], rounds: int) -> list[list[Message]]:
    """The log dealt out round-robin: every round touches (almost) every partial again, so each
    round supersedes the last one's changelog records."""
    return [messages[i::rounds] for i in range(rounds)]


def compaction(ctx: Context) -> None:
    """All rounds but the last into a first worker; Kafka compacts; a fresh worker recovers from
    the changelogs alone (its local partials must be the fold of those rounds), then ingests the
    last round — outcomes of earlier predictions, predictions of early outcomes: the recovered
    join buffer at work — and runs the weekly run, both checked against the oracle."""
    r = ctx.result
    records, rounds = (6_000, 4) if ctx.quick else (60_000, 8)
    r.load = f"{records:,} records in {rounds} rounds"
    svc = ctx.service("compaction", partitions=4, extra={
        "MODEL_MONITORING_COMPACTED_TOPIC_CONFIG": orjson.dumps(COMPACTING).decode()})
    refs = baselines()
    parts = rounds_of(stream(records, ctx.seed + 11, ALERTING), rounds)
    before, last = [m for part in parts[:-1] for m in part], parts[-1]
    svc.publish_baselines(refs)
    first = svc.start_worker(0)
    svc.wait_baselines(first, len(refs))
    for i, part in enumerate(parts[:-1]):
        time.sleep(1.2)  # past segment.ms: this round's writes open new segments
        if i:
            svc.publish_baselines(refs)  # a republished baseline: an update compaction drops
        svc.produce(part)
        if not svc.wait_consumed(180):
            raise ScenarioFailed(f"round {i + 1} not consumed:\n{first.log_tail()}")
    progress(f"  {len(before):,} messages in {rounds - 1} rounds ingested")
    fold_before = offline_fold(before, refs)
    compare_state(r, svc.final_state(), fold_before)

    # Kafka's cleaner (it looks for work every log.cleaner.backoff.ms, 15 s by default)
    topics = [f"{svc.app_id}-{name}-changelog" for name in CHANGELOGS] + [svc.s.baselines_topic]
    must = [f"{svc.app_id}-partials-changelog", svc.s.baselines_topic]
    figures: dict[str, dict[str, int]] = {}

    def cleaned() -> bool:
        figures.update(run_async(log_figures(svc.broker.bootstrap, topics)))
        return all(compacted(figures[t]) for t in must)

    started = time.monotonic()
    ok = wait_until(cleaned, 180 if ctx.quick else 300, 3.0)
    r.notes["compaction_seconds"] = round(time.monotonic() - started, 1)
    r.notes["logs"] = {t.removeprefix(f"{svc.app_id}-").removeprefix(f"{svc.app_id}."): f
                       for t, f in figures.items()}
    progress(f"  compacted within {r.notes['compaction_seconds']}s: {r.notes['logs']}")
    if not ok:
        raise ScenarioFailed(f"Kafka did not compact {must}: {figures}")

    # a new machine: an empty data dir, the same app id; the group's offsets are at the inputs' end
    first.stop()
    fresh = svc.start_worker(1)
    r.check(consumed(fresh) == 0, f"the fresh worker consumed {consumed(fresh):,.0f} input records: "
                                  "its state did not come from the changelogs alone")
    fresh.stop()  # a clean stop: its RocksDB holds what it recovered, and keeps it for the restart
    compare_state(r, local_partials(Path(fresh.env["MODEL_MONITORING_DATA_DIR"])), fold_before)

    fresh = svc.start_worker(1)
    svc.produce(last)
    if not svc.wait_consumed(180):
        raise ScenarioFailed(f"the last round not consumed:\n{fresh.log_tail()}")
    fold = offline_fold(before + last, refs)
    final = svc.final_state()
    compare_state(r, final, fold)
    account(r, final, fold, svc.dead_letters("features", "outcomes"))
    job_run_id = "after-compaction"
    svc.trigger(job_run_id)
    if not svc.wait_completed(job_run_id, 120):
        raise ScenarioFailed(f"run {job_run_id} did not finish:\n{fresh.log_tail()}")
    time.sleep(2.0)
    check_run(r, expected_run(fold, refs, svc.s, job_run_id, END_MS, incidents=svc.expected_incidents),
              svc.outputs(job_run_id), job_run_id)
    partials = r.notes["logs"]["partials-changelog"]
    r.faults = (f"compacted (partials changelog {partials['present']:,} of {partials['written']:,} "
                f"records left); a fresh worker recovers, ingests, runs")
