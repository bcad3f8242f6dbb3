"""Scenario 5, bad input: malformed messages of every kind interleaved with good traffic, part
of them drawn from hypothesis strategies with a fixed seed. Each bad message (or bad record of
an envelope) is labelled with the reason it must be dead-lettered with; each good record must
be counted. The labels come from how the message was built, not from the service's validators."""

from __future__ import annotations

import random

import orjson

from bench.scenarios.bad_messages import Bad, bad_messages
from bench.scenarios.checks import check_dead_letters, compare_state, counted, worker_unaffected
from bench.scenarios.common import ScenarioFailed, progress, run_async, wait_until
from bench.scenarios.context import Context
from bench.scenarios.load import baselines, ingest_start, stream
from model_monitoring.commands.harness import consumed, ingest_topics
from model_monitoring.commands.simulate import Message, Scenario
from tests.support.oracle import offline_fold


def interleave(good: list[Message], bad: list[Bad], rng: random.Random) -> list[Message]:
    slots: list[list[Message]] = [[m] for m in good]
    for b in bad:
        if not b.late:
            slots[rng.randrange(len(slots))].append(Message(b.kind, b.key, b.value, 0))
    return [m for slot in slots for m in slot] + [Message(b.kind, b.key, b.value, 0) for b in bad if b.late]


def bad_input(ctx: Context) -> None:
    r = ctx.result
    n_good, n_bad = (4_000, 1_000) if ctx.quick else (40_000, 10_000)
    rng = random.Random(ctx.seed + 5)
    good = stream(n_good, ctx.seed + 5, Scenario(early_outcome_rate=0.05))
    docs = [orjson.loads(m.value) for m in good]
    features = [d for m, d in zip(good, docs, strict=False) if m.kind == "features"]
    outcomes = [d for m, d in zip(good, docs, strict=False) if m.kind == "outcomes"]
    bad = bad_messages(n_bad, rng, features, outcomes, ctx.seed)
    messages = interleave(good, bad, rng)
    bad_records = sum(len(b.reasons) for b in bad)
    late = sum(1 for b in bad if b.late)
    categories = sorted({b.category for b in bad})
    r.load = f"{len(good):,} good + {len(bad):,} bad messages"
    r.faults = f"{bad_records - late:,} malformed + {late} too late, {len(categories)} kinds"
    r.notes["categories"] = categories
    progress(f"  {len(bad):,} bad messages holding {bad_records:,} bad records; {len(categories)} kinds")

    svc = ctx.service("badinput", partitions=4)
    refs = baselines()
    worker = ingest_start(svc, refs)
    pid = worker.process.pid  # type: ignore[union-attr]
    svc.produce(messages)
    inputs = [*ingest_topics(svc.s), svc.s.trigger_topic]
    if not wait_until(lambda: run_async(consumed(svc.broker.bootstrap, svc.app_id, inputs)),
                      300, 1.0):
        raise ScenarioFailed(f"input not consumed:\n{worker.log_tail()}")
    worker_unaffected(r, worker, pid)
    errors = [d for d in worker.json_lines() if d.get("level") in ("error", "critical")]
    r.check(not errors, f"{len(errors)} error lines in the worker log, e.g. {str(errors[:1])[:300]}")

    # the good: exactly the offline fold, and exactly the records built as good
    too_late = {b.key for b in bad if b.late}  # the oracle knows no retention: leave them out
    io = [m for m in messages if m.kind in ("features", "outcomes") and m.key not in too_late]
    expected = offline_fold(io, refs)
    actual = svc.final_state()
    compare_state(r, actual, expected)
    good_built = len(good) + sum(b.good_records for b in bad)
    r.check(counted(actual) == good_built, f"counted {counted(actual):,} != {good_built:,} good records built")
    # the bad: each one dead-lettered once, with the reason it was built for
    dead = svc.dead_letters("features", "outcomes", "trigger")
    r.messages_in = good_built + bad_records
    r.accounted = counted(actual) + check_dead_letters(r, dead)
    r.check(r.accounted == r.messages_in, f"accounted {r.accounted:,} != in {r.messages_in:,}")
    want = {(b.key, index): reason for b in bad for index, reason in b.reasons.items()}
    got = {}
    for rec in dead:
        h = {k: v.decode() for k, v in rec.headers}
        got[(rec.key, int(h.get("source.index", "-1")))] = h["error"]
    missing = set(want) - set(got)
    r.check(not missing, f"{len(missing)} bad messages/records not in a DLQ, e.g. "
                         f"{[(k, i, want[(k, i)]) for k, i in sorted(missing)[:3]]}")
    r.check(not set(got) - set(want), f"{len(set(got) - set(want))} good records dead-lettered")
    wrong = {k: (want[k], got[k]) for k in set(want) & set(got) if want[k] != got[k]}
    r.check(not wrong, f"{len(wrong)} dead letters with another reason than built for, e.g. "
                       f"{list(wrong.items())[:3]}")
    r.check(not svc.read(svc.s.runs_topic), "a bad trigger started a run")
    r.notes["by_kind"] = dict(sorted({c: sum(len(b.reasons) for b in bad if b.category == c)
                                      for c in categories}.items()))
