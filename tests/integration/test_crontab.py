"""The service's own schedule fires on the leader only: two workers in one group, a crontab of
every 15 seconds (a seconds field: no test waits for a minute to turn), one trigger and one run
per tick, each named by its tick."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import WorkerProcess, read_topic, service_env
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import load_settings
from tests.support.waiting import until_consumed, wait_until

pytestmark = pytest.mark.integration


def test_crontab_fires_once_with_two_workers(broker: Broker, unique: str, tmp_path: Path) -> None:
    base = service_env(broker, tmp_path / "a", app_id=f"{unique}-cron", topic_prefix=f"{unique}.",
                       extra={"MODEL_MONITORING_PARTITIONS": "2", "MODEL_MONITORING_CRON": "* * * * * */15"})
    s = load_settings(base)
    asyncio.run(ensure_topics(s))
    second = dict(base, MODEL_MONITORING_DATA_DIR=str(tmp_path / "b"),
                  MODEL_MONITORING_WEB_PORT=str(int(base["MODEL_MONITORING_WEB_PORT"]) + 1))
    workers = [WorkerProcess(base, tmp_path / "w1.log").start(), WorkerProcess(second, tmp_path / "w2.log").start()]

    def logs() -> str:
        return "\n---\n".join(w.log_tail() for w in workers)

    def read(topic: str) -> list[dict[str, Any]]:
        """Every message of the topic, read to its end offset."""
        return [orjson.loads(r.value) for r in asyncio.run(read_topic(broker.bootstrap, topic, timeout=60))]

    try:
        for w in workers:
            w.wait_ready()
        # the next tick is at most 15 s away, and its run takes seconds
        wait_until(lambda: bool(read(s.completed_topic)), 60, every=1.0, failure=logs)
        # both workers consumed every trigger (a second worker's echo of the tick included) and
        # every message of the runs they started
        asyncio.run(until_consumed(broker.bootstrap, s.app_id, [s.trigger_topic, s.runs_topic,
                                   s.snapshot_requests_topic, s.snapshot_parts_topic], 60, failure=logs))
    finally:
        for w in workers:
            w.stop()
    # with both workers stopped nothing more arrives: the topics read to their end are final
    triggers = read(s.trigger_topic)
    per_tick = Counter(t["jobRunId"] for t in triggers)
    assert per_tick and all(t["metadata"]["source"] == "cron" for t in triggers), logs()
    assert set(per_tick.values()) == {1}, f"a tick fired twice: {per_tick}"
    # named by the scheduled second (cron-YYYYmmddTHHMMSS), whichever leader fired it
    assert all(len(t) == len("cron-20261129T060015") and t[-2:] in {"00", "15", "30", "45"} for t in per_tick), per_tick
    per_run = Counter(r["jobRunId"] for r in read(s.completed_topic))
    assert per_run and set(per_run.values()) == {1}, per_run
    assert set(per_run) <= set(per_tick), (per_run, per_tick)
