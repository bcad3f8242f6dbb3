"""Continuous detection on a real broker and worker: `amount` turns null mid-stream (5 events/s
of event time, two partitions). The early drift event arrives — jobRunId null, detector adwin,
metric missing_share — within 15 minutes of event time of the change, before any weekly run;
the weekly run that follows reports the same incident `ongoing`, not opened again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import WorkerProcess, produce, read_topic
from model_monitoring.commands.simulate import reference_records
from model_monitoring.schemas.timestamps import format_timestamp, parse_timestamp_ms
from model_monitoring.streams.settings import Settings
from tests.support.baselines import build_baselines, provisioned
from tests.support.waiting import until_consumed, wait_for_baselines, wait_until

pytestmark = pytest.mark.integration

MINUTE = 60_000
MIDNIGHT_MS = 1_795_046_400_000  # UTC; the weekly run counts whole days
START_MS = MIDNIGHT_MS - 6 * 3600_000
CHANGE_MS = START_MS + 60 * MINUTE
END_MS = START_MS + 90 * MINUTE
RATE = 5  # events per second of event time


def records() -> Iterator[dict[str, Any]]:
    ref = reference_records("risk-scoring", n=(END_MS - START_MS) // 1000 * RATE, seed=21)
    for i, rec in enumerate(ref):
        ts = START_MS + i * 1000 // RATE
        features = dict(rec["features"])
        if ts >= CHANGE_MS:
            features["amount"] = None
        yield {"predictionId": f"c-{i}", "tenantId": "acme", "modelId": "risk-scoring",
               "modelVersion": "3", "timestamp": format_timestamp(ts), "prediction": rec["prediction"],
               "features": features}


@pytest.fixture(scope="module")
def service(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, WorkerProcess]]:
    tmp = tmp_path_factory.mktemp("continuous")
    key = ("risk-scoring", "3")
    env, s, _ = provisioned(broker, tmp / "data", "continuous", partitions=2,
                            baselines={key: build_baselines()[key]})
    worker = WorkerProcess(env, tmp / "worker.log").start()
    try:
        worker.wait_ready()
        wait_for_baselines(worker, s, 1)
        messages = []
        batch: list[dict[str, Any]] = []
        for rec in records():  # envelopes of 50 consecutive records, one per key in turn
            batch.append(rec)
            if len(batch) == 50:
                messages.append((s.features_topic, batch[0]["predictionId"].encode(), orjson.dumps({"records": batch})))
                batch = []
        asyncio.run(produce(broker.bootstrap, messages))
        asyncio.run(until_consumed(broker.bootstrap, s.app_id, [s.features_topic], 240, failure=worker.log_tail))
        yield s, worker
    finally:
        worker.stop()


def read(broker: Broker, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in asyncio.run(read_topic(broker.bootstrap, topic, timeout=60))]


def test_early_alert_then_the_weekly_run_reports_it_ongoing(broker: Broker,
                                                             service: tuple[Settings, WorkerProcess]) -> None:
    s, worker = service
    deadline = time.monotonic() + 120
    early: list[dict[str, Any]] = []
    while not early:
        early = [d for d in read(broker, s.drift_topic) if d["jobRunId"] is None]
        if time.monotonic() > deadline:
            raise AssertionError(f"no continuous drift event:\n{worker.log_tail()}")
        if not early:
            time.sleep(1)
    assert [(d["feature"], d["metric"], d["detector"], d["incidentStatus"]) for d in early] == [
        ("amount", "missing_share", "adwin", "opened")]
    alert = early[0]
    change_at, detected_at = parse_timestamp_ms(alert["changeAt"]), parse_timestamp_ms(alert["detectedAt"])
    assert CHANGE_MS - 2 * MINUTE <= change_at <= detected_at
    assert detected_at - CHANGE_MS <= 15 * MINUTE  # within 15 minutes of event time
    assert alert["value"] > 0.9 and alert["kind"] == "feature"

    # the weekly run: the same incident, ongoing
    run = {"job": "model-monitoring", "jobRunId": "week-1", "metadata": {"windowEnd": format_timestamp(MIDNIGHT_MS)}}
    asyncio.run(produce(broker.bootstrap, [(s.trigger_topic, b"week-1", orjson.dumps(run))]))
    wait_until(lambda: any(d["jobRunId"] == "week-1" for d in read(broker, s.completed_topic)), 120,
               every=1, failure=worker.log_tail)
    weekly = [d for d in read(broker, s.drift_topic) if d["jobRunId"] == "week-1"]
    amount = [d for d in weekly if d["feature"] == "amount" and d["segment"] is None]
    assert [(d["incidentStatus"], d["incidentId"], d["openedAt"]) for d in amount] == [
        ("ongoing", alert["incidentId"], alert["openedAt"])]
    assert all(d["incidentStatus"] != "opened" or d["feature"] != "amount" for d in weekly)
