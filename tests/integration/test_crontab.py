"""The service's own schedule fires on the leader only: two workers in one group, a crontab of
every minute, one trigger and one run per tick."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from model_monitoring.commands.broker import EmbeddedBroker
from model_monitoring.commands.harness import WorkerProcess, read_topic, service_env
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import load_settings

pytestmark = pytest.mark.integration


def test_crontab_fires_once_with_two_workers(broker: EmbeddedBroker, unique: str, tmp_path: Path) -> None:
    base = service_env(broker.bootstrap, tmp_path / "a", app_id=f"{unique}-cron", topic_prefix=f"{unique}.",
                       extra={"MODEL_MONITORING_PARTITIONS": "2", "MODEL_MONITORING_CRON": "* * * * *"})
    s = load_settings(base)
    asyncio.run(ensure_topics(s))
    second = dict(base, MODEL_MONITORING_DATA_DIR=str(tmp_path / "b"),
                  MODEL_MONITORING_WEB_PORT=str(int(base["MODEL_MONITORING_WEB_PORT"]) + 1))
    workers = [WorkerProcess(base, tmp_path / "w1.log").start(), WorkerProcess(second, tmp_path / "w2.log").start()]
    try:
        for w in workers:
            w.wait_ready()
        # the next tick (at most a minute away), then a few seconds for a second worker's echo
        deadline = time.time() + 100
        runs: list[dict] = []
        while time.time() < deadline:
            runs = [orjson.loads(r.value) for r in asyncio.run(read_topic(broker.bootstrap, s.completed_topic, timeout=0.5))]
            if runs:
                break
            time.sleep(2)
        time.sleep(5)
        triggers = [orjson.loads(r.value) for r in asyncio.run(read_topic(broker.bootstrap, s.trigger_topic, timeout=0.5))]
    finally:
        for w in workers:
            w.stop()
    cron_ids = [t["jobRunId"] for t in triggers if t["metadata"].get("source") == "cron"]
    assert cron_ids, [w.log_tail() for w in workers]
    assert len(cron_ids) == len(set(cron_ids)), f"a tick fired twice: {cron_ids}"
    completed = [r["jobRunId"] for r in runs]
    assert len(completed) == len(set(completed))
    assert set(completed) <= set(cron_ids) and completed
