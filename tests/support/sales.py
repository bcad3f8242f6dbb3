"""The sales-cycle stream on a real broker and worker (`simulate`'s `sales` scenario: outcomes
2–120 days after their predictions), its weekly runs, and the oracle of the outcome-arrival
view computed from the raw messages. Shared by the outcome-clock tests and their regressions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.demo import sales_baseline
from model_monitoring.commands.harness import WorkerProcess, produce, read_topic, service_env
from model_monitoring.commands.simulate import DAY_MS, Message, SalesConfig, generate_sales
from model_monitoring.schemas.timestamps import format_timestamp, parse_timestamp_ms
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import load_settings
from tests.support.waiting import feed, wait_for_baselines, wait_until

END_MS = 1_795_046_400_000  # a midnight UTC
WEEK_MS = 7 * DAY_MS
JOIN_TTL_MS = 90 * DAY_MS  # the worker's default
CFG = SalesConfig(end_ms=END_MS, seed=5)


def run_sales(broker: Broker, tmp: Path, *, app_id: str, weeks_back: tuple[int, ...] = (1, 0),
              outcomes_first: bool = False) -> dict[str, Any]:
    """Produce the sales stream to a fresh worker, then trigger a run for each week (oldest first:
    the incident book refuses a run older than the last) and collect what each published.
    `outcomes_first` lets the worker fold every outcome before any prediction arrives, which is
    what a worker whose features topic fell behind sees."""
    env = service_env(broker, tmp / "data", app_id=app_id, topic_prefix=f"{app_id}.",
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
        wait_for_baselines(worker, s, 1)
        rounds = [("outcomes",), ("features",)] if outcomes_first else [("features", "outcomes")]
        for kinds in rounds:
            feed(broker.bootstrap, s, worker, [m for m in messages if m.kind in kinds], 300)
        runs = {}
        for back in weeks_back:
            job_run_id = f"sales-{back}"
            doc = {"job": "model-monitoring", "jobRunId": job_run_id,
                   "metadata": {"windowEnd": format_timestamp(END_MS - back * WEEK_MS)}}
            asyncio.run(produce(broker.bootstrap, [(s.trigger_topic, b"k", orjson.dumps(doc))]))
            wait_until(lambda j=job_run_id: bool(events(broker, s.completed_topic, j)), 120, every=0.5,
                       failure=worker.log_tail)
            runs[back] = {kind: events(broker, topic, job_run_id) for kind, topic in (
                ("snapshot", s.snapshot_topic), ("drift", s.drift_topic), ("degraded", s.degraded_topic))}
        return {"runs": runs, "messages": messages, "metrics": worker.get("/metrics")[1].decode()}
    finally:
        worker.stop()


def events(broker: Broker, topic: str, job_run_id: str) -> list[dict[str, Any]]:
    docs = [orjson.loads(r.value) for r in asyncio.run(read_topic(broker.bootstrap, topic, timeout=60))]
    return [d for d in docs if d.get("jobRunId") == job_run_id]


def raw(messages: list[Message]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The predictions by id, and the outcomes in order."""
    preds = {}
    outs = []
    for m in messages:
        doc = orjson.loads(m.value)
        if m.kind == "features":
            preds[doc["predictionId"]] = doc
        else:
            outs.append(doc)
    return preds, outs


def arrival_view(messages: list[Message], start_ms: int, end_ms: int) -> tuple[list[tuple[float, float]], int]:
    """The outcome-arrival window's (prediction, outcome) pairs, completed in [start, end) within
    the TTL; and the outcomes that arrived in it later than the TTL after their prediction."""
    preds, outs = raw(messages)
    pairs = []
    late = 0
    for o in outs:
        p = preds[o["predictionId"]]
        p_ms, o_ms = parse_timestamp_ms(p["timestamp"]), parse_timestamp_ms(o["timestamp"])
        if o_ms - p_ms > JOIN_TTL_MS:
            late += start_ms <= o_ms < end_ms
        elif start_ms <= max(p_ms, o_ms) < end_ms:
            pairs.append((p["prediction"], o["outcome"]))
    return pairs, late
