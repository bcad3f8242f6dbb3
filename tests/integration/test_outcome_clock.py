"""The outcome clock on a real broker and worker, with sales-cycle label lags (`simulate`'s
`sales` scenario: outcomes 2–120 days after their predictions, the model wrong on the predictions
made from week 12, its scores moving in week 20). The last week's run:

- the prediction-window view says `insufficient_data` (a week's deals have hardly closed);
- the outcome-arrival view raises the degradation, with the exact Brier of the outcomes that
  arrived in the window;
- prediction drift fires in the week the score distribution moves, and not the week before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.demo import sales_baseline
from model_monitoring.commands.harness import WorkerProcess, produce, read_topic, service_env
from model_monitoring.commands.simulate import DAY_MS, SalesConfig, generate_sales
from model_monitoring.schemas.timestamps import format_timestamp, parse_timestamp_ms
from model_monitoring.schemas.validation import Validators
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import load_settings
from tests.support.waiting import until_consumed, wait_until

pytestmark = pytest.mark.integration

END_MS = 1_795_046_400_000  # a midnight UTC
WEEK_MS = 7 * DAY_MS
CFG = SalesConfig(end_ms=END_MS, seed=5)
VALIDATORS = Validators()


@pytest.fixture(scope="module")
def sales(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("sales")
    env = service_env(broker, tmp / "data", app_id="sales-mm", topic_prefix="sales.",
                      extra={"MODEL_MONITORING_PARTITIONS": "2", "MODEL_MONITORING_CRON_ENABLED": "false"})
    s = load_settings(env)
    asyncio.run(ensure_topics(s))
    baseline = sales_baseline(CFG, n=5_000)
    asyncio.run(produce(broker.bootstrap, [(s.baselines_topic, baseline.key().encode(),
                                            orjson.dumps(baseline.to_dict()))]))
    messages = list(generate_sales(CFG))
    worker = WorkerProcess(env, tmp / "worker.log").start()
    try:
        worker.wait_ready()
        wait_until(lambda: worker.metric("model_monitoring_records_consumed_total", topic=s.baselines_topic) >= 1,
                   60, every=0.3, failure=worker.log_tail)
        topic_of = {"features": s.features_topic, "outcomes": s.outcomes_topic}
        asyncio.run(produce(broker.bootstrap, [(topic_of[m.kind], m.key, m.value) for m in messages]))
        asyncio.run(until_consumed(broker.bootstrap, s.app_id, [s.features_topic, s.outcomes_topic], 300,
                                   failure=worker.log_tail))
        runs = {}
        for weeks_back in (1, 0):  # in order: the incident book refuses a run older than the last
            job_run_id = f"sales-{weeks_back}"
            doc = {"job": "model-monitoring", "jobRunId": job_run_id,
                   "metadata": {"windowEnd": format_timestamp(END_MS - weeks_back * WEEK_MS)}}
            asyncio.run(produce(broker.bootstrap, [(s.trigger_topic, b"k", orjson.dumps(doc))]))
            wait_until(lambda j=job_run_id: bool(events(broker, s.completed_topic, j)), 120, every=0.5,
                       failure=worker.log_tail)
            runs[weeks_back] = {kind: events(broker, topic, job_run_id) for kind, topic in (
                ("snapshot", s.snapshot_topic), ("drift", s.drift_topic), ("degraded", s.degraded_topic))}
        yield {"runs": runs, "messages": messages, "metrics": worker.get("/metrics")[1].decode()}
    finally:
        worker.stop()


def events(broker: Broker, topic: str, job_run_id: str) -> list[dict[str, Any]]:
    docs = [orjson.loads(r.value) for r in asyncio.run(read_topic(broker.bootstrap, topic, timeout=60))]
    return [d for d in docs if d.get("jobRunId") == job_run_id]


def raw(messages: list[Any]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    preds = {}
    outs = []
    for m in messages:
        doc = orjson.loads(m.value)
        if m.kind == "features":
            preds[doc["predictionId"]] = doc
        else:
            outs.append(doc)
    return preds, outs


def test_the_outcome_view_catches_what_the_prediction_view_cannot_see_yet(sales: dict[str, Any]) -> None:
    run = sales["runs"][0]
    for kind, docs in run.items():
        for doc in docs:
            VALIDATORS.validate(kind, doc)
    (snap,) = [d for d in run["snapshot"] if d["segment"] is None]
    assert snap["windowBasis"] == "outcome"
    assert snap["performanceViews"]["prediction"]["brier"]["status"] == "insufficient_data"
    brier = snap["performance"]["brier"]
    assert brier["status"] == "degraded" and brier["windowBasis"] == "outcome"
    # the exact Brier of the outcomes that arrived in the window, whenever their predictions were made
    preds, outs = raw(sales["messages"])
    start, end = END_MS - WEEK_MS, END_MS
    pairs = []
    for o in outs:
        p = preds[o["predictionId"]]
        p_ms, o_ms = parse_timestamp_ms(p["timestamp"]), parse_timestamp_ms(o["timestamp"])
        if start <= max(p_ms, o_ms) < end and o_ms - p_ms <= 90 * DAY_MS:
            pairs.append((p["prediction"], o["outcome"]))
    p_arr, y_arr = np.array(pairs, dtype=np.float64).T
    assert brier["sampleSize"] == len(pairs)
    assert brier["value"] == pytest.approx(float(np.mean((p_arr - y_arr) ** 2)), abs=1e-12)
    (degraded,) = [e for e in run["degraded"] if e["metric"] == "brier"]
    assert degraded["windowBasis"] == "outcome" and degraded["value"] == brier["value"]
    # calibration and label health are reported beside it
    calibration = snap["calibration"]
    terms = (calibration["reliability"] - calibration["resolution"] + calibration["uncertainty"]
             + calibration["withinBinVariance"] - calibration["withinBinCovariance"])
    assert abs(terms - brier["value"]) <= 1e-12
    labels = snap["labels"]
    assert labels["coverage"] < 0.05 and labels["lagP50Hours"] > 14 * 24
    late = sum(1 for o in outs if start <= parse_timestamp_ms(o["timestamp"]) < end
               and parse_timestamp_ms(o["timestamp"]) - parse_timestamp_ms(preds[o["predictionId"]]["timestamp"])
               > 90 * DAY_MS)
    assert late > 0 and labels["expiredEarlyOutcomes"] == late  # outcomes later than the TTL: unmatched, not lost
    assert snap["expectedBrier"] is not None and snap["expectedBrier"] < brier["value"]
    # label health in /metrics too, per model version
    version = snap["modelVersion"]
    for name in ("coverage", "lag_p50_hours", "lag_p90_hours", "unmatched_outcomes", "expected_brier"):
        assert (f'model_monitoring_label_health{{figure="{name}",model="deal-scoring",tenant="{snap["tenantId"]}",'
                f'version="{version}"}}') in sales["metrics"], name
    assert 'model_monitoring_metric_value{metric="ece",model="deal-scoring"' in sales["metrics"]


def test_prediction_drift_fires_in_the_week_the_scores_move(sales: dict[str, Any]) -> None:
    before, moved = sales["runs"][1], sales["runs"][0]
    (snap_before,) = [d for d in before["snapshot"] if d["segment"] is None]
    assert snap_before["prediction"]["status"] == "ok"
    assert not [e for e in before["drift"] if e.get("kind") == "prediction"]
    (event,) = [e for e in moved["drift"] if e.get("kind") == "prediction"]
    assert event["feature"] == "prediction" and event["incidentStatus"] == "opened"
    assert all(e["kind"] == "feature" for e in moved["drift"] if e is not event)
