"""Regression, with two workers on the bundled broker: records dropped during a rebalance on a
partition the group had not committed yet were never read again (the story and the
broker-free tests: tests/unit/test_regression_uncommitted_partition_skipped.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import WorkerProcess, produce, service_env
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import load_settings
from tests.support.baselines import baseline_message, build_baselines
from tests.support.waiting import until_consumed

pytestmark = pytest.mark.integration


def test_two_workers_starting_together_load_every_baseline(broker: Broker, unique: str,
                                                           tmp_path: Path) -> None:
    """What lost a baseline one start in three before: the records are there before the
    workers start; each of three rounds must consume them all."""
    baselines = build_baselines()
    for round_ in range(3):
        env = service_env(broker, tmp_path / f"r{round_}-data-0",
                          app_id=f"{unique}-{round_}", topic_prefix=f"{unique}-{round_}.",
                          extra={"MODEL_MONITORING_PARTITIONS": "4",
                                 "MODEL_MONITORING_CRON_ENABLED": "false"})
        second = dict(env, MODEL_MONITORING_DATA_DIR=str(tmp_path / f"r{round_}-data-1"),
                      MODEL_MONITORING_WEB_PORT=str(int(env["MODEL_MONITORING_WEB_PORT"]) + 1))
        s = load_settings(env)
        asyncio.run(ensure_topics(s))
        asyncio.run(produce(broker.bootstrap, [(s.baselines_topic, *baseline_message(b))
                                               for b in baselines.values()]))
        workers = [WorkerProcess(e, tmp_path / f"r{round_}-w{i}.log").start()
                   for i, e in enumerate((env, second))]
        try:
            for w in workers:
                w.wait_ready()
            asyncio.run(until_consumed(broker.bootstrap, s.app_id, [s.baselines_topic], 30,
                                       failure=f"round {round_}: a baseline was skipped"))
        finally:
            for w in workers:
                w.stop()
