"""`model-monitoring tail` against the bundled broker: it reads the service's output topics in
its own group, deduplicates redeliveries, POSTs to a webhook, and commits only what it delivered."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from model_monitoring.commands.broker import EmbeddedBroker
from model_monitoring.commands.harness import group_lag, produce, service_env
from model_monitoring.commands.tail import TailOptions, run_tail, topics_by_kind
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import Settings, load_settings
from tests.unit.test_tail import COMPLETED, DEGRADED, DRIFT, FAILED, SNAPSHOT, Receiver

pytestmark = pytest.mark.integration


def settings_for(broker: EmbeddedBroker, unique: str, tmp_path: Path) -> Settings:
    env = service_env(broker.bootstrap, tmp_path / "data", app_id=f"{unique}-mm",
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


async def tail_for(s: Settings, opts: TailOptions, seconds: float,
                   until: Callable[[str], bool] = lambda out: False) -> tuple[int, str, str]:
    """Run the tail until it returns, `until(stdout)` holds, or `seconds` pass; then stop it as
    SIGTERM would (it finishes its batch and commits)."""
    out, err, stop = io.StringIO(), io.StringIO(), asyncio.Event()
    task = asyncio.create_task(run_tail(s, opts, out, err, stop))
    deadline = asyncio.get_running_loop().time() + seconds
    while not task.done() and asyncio.get_running_loop().time() < deadline:
        if until(out.getvalue()):
            await asyncio.sleep(1.0)  # a redelivered duplicate may follow in the same batch
            break
        await asyncio.sleep(0.1)
    stop.set()
    code = await asyncio.wait_for(task, timeout=30)
    return code, out.getvalue(), err.getvalue()


async def test_tail_delivers_each_event_once_and_commits(broker: EmbeddedBroker, unique: str,
                                                         tmp_path: Path) -> None:
    s = settings_for(broker, unique, tmp_path)
    await ensure_topics(s)
    await publish(s)
    group = f"{unique}-tail"
    with Receiver([500, 200]) as hook:
        opts = TailOptions(group=group, from_beginning=True, webhook=hook.url,
                           webhook_backoff=0.05)
        code, out, err = await tail_for(s, opts, 90, until=lambda out: len(out.splitlines()) >= 5)
    assert code == 0, err
    kinds = sorted(line.split()[1] for line in out.splitlines())
    assert kinds == ["COMPLETED", "DEGRADED", "DRIFT", "FAILED", "SNAPSHOT"], out
    posted = [body for _, body in hook.requests]
    assert len(posted) == 6  # five events, one of them retried after the 500
    assert sorted({p["type"] for p in posted}) == ["completed", "degraded", "drift", "failed", "snapshot"]
    assert await group_lag(s.kafka_bootstrap_servers, group, list(topics_by_kind(s).values())) == 0

    # the same group again: it resumes after what was committed, so only the new event shows
    later = {**DEGRADED, "eventId": "ev-3", "metric": "mae"}
    await produce(s.kafka_bootstrap_servers, [
        (topics_by_kind(s)["degraded"], b"acme:risk-scoring", json.dumps(later).encode())])
    code, out, _ = await tail_for(s, TailOptions(group=group, from_beginning=True), 60,
                                  until=lambda out: bool(out))
    assert code == 0 and len(out.splitlines()) == 1 and " mae=0.19 " in out, out


async def test_undelivered_event_stays_uncommitted(broker: EmbeddedBroker, unique: str,
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
