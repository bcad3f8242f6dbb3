"""Incidents on a real broker: three weeks of acme's two models, a drift (pipeline_value ×3) in
risk-scoring and an accuracy drop in churn during the first two weeks, both gone in the third.
Three weekly runs, one per week: the first opens one incident per feature or metric, the second
publishes them as ongoing under the same ids, the third resolves them, once each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import WorkerProcess, produce, read_topic
from model_monitoring.commands.simulate import DAY_MS, Scenario, StreamConfig, generate
from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.streams.settings import Settings
from tests.support.baselines import provisioned
from tests.support.waiting import feed, wait_for_baselines

pytestmark = pytest.mark.integration

END_MS = 1_795_046_400_000  # a midnight UTC
SCENARIO = Scenario(numeric_shift=("acme:risk-scoring",), accuracy_drop=("acme:churn",), weeks=(1, 2))
RUNS = (("week-1", END_MS - 14 * DAY_MS), ("week-2", END_MS - 7 * DAY_MS), ("week-3", END_MS))


class Runs:
    def __init__(self, broker: Broker, s: Settings, worker: WorkerProcess) -> None:
        self.broker, self.s, self.worker = broker, s, worker

    def run(self, job_run_id: str, window_end_ms: int, timeout: float = 90) -> dict[str, list[dict[str, Any]]]:
        """Trigger one run, wait for its completion: what it published, per kind."""
        doc = {"job": "model-monitoring", "jobRunId": job_run_id,
               "metadata": {"windowEnd": format_timestamp(window_end_ms)}}
        asyncio.run(produce(self.broker.bootstrap, [(self.s.trigger_topic, job_run_id.encode(), orjson.dumps(doc))]))
        deadline = time.monotonic() + timeout
        while not self.read(self.s.completed_topic, job_run_id):
            if time.monotonic() > deadline:
                raise AssertionError(f"no completion for {job_run_id}:\n{self.worker.log_tail()}")
            time.sleep(0.5)
        topics = {"drift": self.s.drift_topic, "degraded": self.s.degraded_topic,
                  "resolved": self.s.drift_resolved_topic, "recovered": self.s.performance_recovered_topic,
                  "snapshot": self.s.snapshot_topic, "completed": self.s.completed_topic}
        return {kind: self.read(topic, job_run_id) for kind, topic in topics.items()}

    def read(self, topic: str, job_run_id: str) -> list[dict[str, Any]]:
        docs = [orjson.loads(r.value) for r in asyncio.run(read_topic(self.broker.bootstrap, topic, timeout=60))]
        return [d for d in docs if d["jobRunId"] == job_run_id]


@pytest.fixture(scope="module")
def runs(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    tmp = tmp_path_factory.mktemp("incidents")
    # the week's predictions: with outcomes up to 5 days late, the outcome view would still see
    # the accuracy drop in week 3 (tests/integration/test_outcome_clock.py)
    env, s, baselines = provisioned(broker, tmp / "data", "incidents",
                                    extra={"MODEL_MONITORING_PERFORMANCE_WINDOW": "prediction"})
    messages = list(generate(StreamConfig(tenants=("acme",), events_per_key=3000, days=21, end_ms=END_MS,
                                          seed=5, scenario=SCENARIO)))
    worker = WorkerProcess(env, tmp / "worker.log").start()
    try:
        worker.wait_ready()
        wait_for_baselines(worker, s, 2)
        feed(broker.bootstrap, s, worker, messages, 240)
        yield Runs(broker, s, worker)
    finally:
        worker.stop()


def subject(event: dict[str, Any]) -> tuple[str, str | None, str]:
    return (event["modelId"], event["segment"], event.get("feature") or event["metric"])


def test_opened_then_ongoing_then_resolved(runs: Runs) -> None:
    first, second, third = (runs.run(job_run_id, end) for job_run_id, end in RUNS)

    # week 1: one event per feature or metric in breach, each opening an incident
    alerts = first["drift"] + first["degraded"]
    # (outcomes unrelated to the predictions: miscalibrated too, ece)
    assert sorted(subject(e) for e in alerts) == [("churn", None, "brier"), ("churn", None, "ece"),
                                                  ("churn", None, "mae"), ("risk-scoring", None, "pipeline_value")]
    assert {e["incidentStatus"] for e in alerts} == {"opened"}
    assert len({e["incidentId"] for e in alerts}) == 4
    in_drift = sorted(s["segment"] for s in first["snapshot"] if s["modelId"] == "risk-scoring" and s["segment"]
                      and s["features"]["pipeline_value"]["status"] == "drift")
    assert [s["segment"] for s in first["drift"][0]["segments"]] == in_drift != []
    assert first["resolved"] == first["recovered"] == []
    opened = {subject(e): e for e in alerts}

    # week 2: the same problems, the same incidents, no alert
    updates = second["drift"] + second["degraded"]
    assert {subject(e): (e["incidentStatus"], e["incidentId"], e["openedAt"]) for e in updates} == {
        key: ("ongoing", e["incidentId"], e["openedAt"]) for key, e in opened.items()}
    assert second["resolved"] == second["recovered"] == []

    # week 3: the problems stopped; each incident resolves once, with its id and opening time
    assert third["drift"] == third["degraded"] == []
    resolutions = third["resolved"] + third["recovered"]
    assert {subject(e): (e["incidentId"], e["openedAt"], e["resolution"]) for e in resolutions} == {
        key: (e["incidentId"], e["openedAt"], "cleared") for key, e in opened.items()}
    for e in resolutions:
        assert e["value"] < e["clearThreshold"] and e["resolvedAt"] > e["openedAt"]
    # the run's counts are of checks; the checks of week 3 are all quiet
    assert third["completed"][0]["driftDetected"] == third["completed"][0]["performanceDegraded"] == 0

    # paging: three alerts in three runs; the updates and resolutions are counted apart
    metric = runs.worker.metric
    assert metric("model_monitoring_alerts_published_total", type="drift", severity="critical") \
        + metric("model_monitoring_alerts_published_total", type="drift", severity="warning") == 1
    assert metric("model_monitoring_alerts_published_total", type="degraded", severity="degraded") == 3
    assert metric("model_monitoring_incident_updates_total", type="drift") == 1
    assert metric("model_monitoring_incident_updates_total", type="degraded") == 3
    assert metric("model_monitoring_incidents_resolved_total", type="drift") == 1
    assert metric("model_monitoring_incidents_resolved_total", type="degraded") == 3

    # the first week again (a late re-run under a new id): older than the last applied, it
    # publishes its snapshots and changes no incident
    late = runs.run("week-1-again", RUNS[0][1])
    assert late["snapshot"] and late["drift"] == late["degraded"] == late["resolved"] == late["recovered"] == []
