"""`model-monitoring tail` against the bundled broker: it reads the service's output topics in
its own group, deduplicates redeliveries, POSTs to a webhook, and commits only what it delivered."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import group_lag, produce, service_env
from model_monitoring.commands.tail import TailOptions, run_tail, topics_by_kind
from model_monitoring.commands.tail_format import format_event
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import Settings, load_settings
from tests.support.events import COMPLETED, DEGRADED, DRIFT, FAILED, SNAPSHOT
from tests.support.waiting import until
from tests.support.webhook import Receiver

pytestmark = pytest.mark.integration


def settings_for(broker: Broker, unique: str, tmp_path: Path) -> Settings:
    env = service_env(broker, tmp_path / "data", app_id=f"{unique}-mm",
                      topic_prefix=f"{unique}.", extra={"MODEL_MONITORING_PARTITIONS": "2"})
    return load_settings(env)


async def publish(s: Settings) -> None:
    t = topics_by_kind(s)
    key = b"acme:risk-scoring"
    await produce(s.kafka_bootstrap_servers, [
        (t["drift"], key, json.dumps(DRIFT).encode()),
        (t["drift"], key, json.dumps(DRIFT).encode()),  # at-least-once upstream: a redelivery
        (t["degraded"], key, json.dumps(DEGRADED).encode()),
        (t["snapshot"], key, json.dumps(SNAPSHOT).encode()),
        (t["completed"], b"run-7", json.dumps(COMPLETED).encode()),
        (t["failed"], b"run-8", json.dumps(FAILED).encode()),
    ])


async def tail_for(s: Settings, opts: TailOptions, seconds: float, drain: bool = False) -> tuple[int, str, str]:
    """Run the tail until it returns by itself or, with `drain`, until its group has committed
    every message of its topics (it commits each event once handled, a redelivered duplicate
    included, so nothing more can show); then stop it as SIGTERM would. At most `seconds`."""
    out, err, stop = io.StringIO(), io.StringIO(), asyncio.Event()
    task = asyncio.create_task(run_tail(s, opts, out, err, stop))
    topics = [topic for kind, topic in topics_by_kind(s).items() if kind in opts.kinds]

    async def finished() -> bool:
        return task.done() or (drain and await group_lag(s.kafka_bootstrap_servers, opts.group, topics) == 0)

    try:
        await until(finished, seconds, every=0.2,
                    failure=lambda: f"the tail neither returned nor drained:\n{err.getvalue()}")
    finally:
        stop.set()
        code = await asyncio.wait_for(task, timeout=30)
    return code, out.getvalue(), err.getvalue()


async def test_tail_delivers_each_event_once_and_commits(broker: Broker, unique: str,
                                                         tmp_path: Path) -> None:
    s = settings_for(broker, unique, tmp_path)
    await ensure_topics(s)
    await publish(s)
    group = f"{unique}-tail"
    with Receiver([500, 200]) as hook:
        opts = TailOptions(group=group, from_beginning=True, webhook=hook.url,
                           webhook_backoff=0.05)
        code, out, err = await tail_for(s, opts, 90, drain=True)
    assert code == 0, err
    published = {"drift": DRIFT, "degraded": DEGRADED, "snapshot": SNAPSHOT, "completed": COMPLETED,
                 "failed": FAILED}
    # each event once, the redelivered drift event too, in its topic's order
    assert sorted(out.splitlines()) == sorted(format_event(kind, body) for kind, body in published.items()), out
    posted = [body for _, body in hook.requests]
    assert len(posted) == 6 and posted[0] == posted[1]  # the first POST answered 500 and was retried
    assert len(posted[1:]) == 5 and {p["type"]: p["event"] for p in posted[1:]} == published
    assert await group_lag(s.kafka_bootstrap_servers, group, list(topics_by_kind(s).values())) == 0

    # the same group again: it resumes after what was committed, so only the new event shows
    later = {**DEGRADED, "eventId": "ev-3", "metric": "mae"}
    await produce(s.kafka_bootstrap_servers, [
        (topics_by_kind(s)["degraded"], b"acme:risk-scoring", json.dumps(later).encode())])
    code, out, _ = await tail_for(s, TailOptions(group=group, from_beginning=True), 60, drain=True)
    assert code == 0 and out.splitlines() == [format_event("degraded", later)], out


async def test_undelivered_event_stays_uncommitted(broker: Broker, unique: str,
                                                   tmp_path: Path) -> None:
    s = settings_for(broker, unique, tmp_path)
    await ensure_topics(s)
    t = topics_by_kind(s)
    await produce(s.kafka_bootstrap_servers, [(t["drift"], b"k", json.dumps(DRIFT).encode())])
    group = f"{unique}-tail"
    with Receiver([503]) as hook:
        opts = TailOptions(group=group, from_beginning=True, kinds=("drift",), webhook=hook.url,
                           webhook_retries=1, webhook_backoff=0.05)
        code, _, err = await tail_for(s, opts, 90)
    assert code == 1 and "offset stays uncommitted" in err
    assert await group_lag(s.kafka_bootstrap_servers, group, [t["drift"]]) == 1

    # with a dead-letter file the event is set aside and the offset committed
    dead = tmp_path / "dead.jsonl"
    with Receiver([503]) as hook:
        opts = TailOptions(group=group, from_beginning=True, kinds=("drift",), webhook=hook.url,
                           webhook_retries=1, webhook_backoff=0.05, dead_letter_file=dead,
                           max_events=1)
        code, _, err = await tail_for(s, opts, 90)
    assert code == 0, err
    assert json.loads(dead.read_text())["event"] == DRIFT
    assert await group_lag(s.kafka_bootstrap_servers, group, [t["drift"]]) == 0
