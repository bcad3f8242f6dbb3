"""The weekly run on a real broker: 3 tenants × 2 models × 2 weeks in which one numeric feature
drifts, one categorical feature gains an unseen category, one model's accuracy drops and one
tenant is too small to judge. The run's snapshots equal what `model-monitoring check` finds on
the same data, it publishes one alert per feature or metric in breach (segments listed inside
the overall one), and the completion counts what was checked."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import WorkerProcess, produce, read_topic
from model_monitoring.commands.simulate import DAY_MS, Scenario, StreamConfig, generate
from model_monitoring.schemas.timestamps import format_timestamp, parse_timestamp_ms
from model_monitoring.streams.settings import Settings
from model_monitoring.streams.tokens import mint_token
from tests.support.baselines import provisioned
from tests.support.waiting import feed, until_consumed, wait_for_baselines

pytestmark = pytest.mark.integration

END_MS = 1_795_046_400_000  # a midnight UTC: the window is the 7 whole days before it
SCENARIO = Scenario(numeric_shift=("acme:risk-scoring",), unseen_category=("globex:churn",),
                    accuracy_drop=("acme:churn",), small_tenants=("initech",),
                    duplicate_rate=0.01, early_outcome_rate=0.03)
RUN = "/api/v1/ml/model-monitoring/run"


class Service:
    def __init__(self, broker: Broker, env: dict[str, str], settings: Settings,
                 worker: WorkerProcess, messages: list[Any], baselines: dict) -> None:
        self.broker, self.env, self.s, self.worker = broker, env, settings, worker
        self.messages, self.baselines = messages, baselines

    def trigger(self, job_run_id: str | None, tenant_ids: list[str] | None = None) -> None:
        doc: dict[str, Any] = {"job": "model-monitoring",
                               "metadata": {"windowEnd": format_timestamp(END_MS)}}
        if job_run_id:
            doc["jobRunId"] = job_run_id
        if tenant_ids is not None:
            doc["metadata"]["tenantIds"] = tenant_ids
        asyncio.run(produce(self.broker.bootstrap, [(self.s.trigger_topic, b"k", orjson.dumps(doc))]))

    def completion(self, job_run_id: str, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.events(self.s.completed_topic, job_run_id)
            if done:
                return done[0]
            time.sleep(0.5)
        raise AssertionError(f"no completion for {job_run_id}:\n{self.worker.log_tail()}")

    def events(self, topic: str, job_run_id: str) -> list[dict[str, Any]]:
        """The run's messages on `topic`, read to the topic's end offset."""
        docs = [orjson.loads(r.value) for r in asyncio.run(read_topic(self.broker.bootstrap, topic, timeout=60))]
        return [d for d in docs if d["jobRunId"] == job_run_id]

    def settle(self, timeout: float = 90) -> None:
        """Wait until the worker has consumed (and committed) every trigger and every internal
        message of the runs: whatever they publish is in its topic by then."""
        inputs = [self.s.trigger_topic, self.s.runs_topic, self.s.snapshot_requests_topic,
                  self.s.snapshot_parts_topic]
        asyncio.run(until_consumed(self.broker.bootstrap, self.s.app_id, inputs, timeout,
                                   failure=self.worker.log_tail))

    def token(self, **kw: Any) -> str:
        return mint_token(self.env["MODEL_MONITORING_JWT_SECRET"], **kw)


@pytest.fixture(scope="module")
def service(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("weekly")
    env, s, baselines = provisioned(broker, tmp / "data", "weekly")
    messages = list(generate(StreamConfig(events_per_key=3000, days=14, end_ms=END_MS, seed=3,
                                          scenario=SCENARIO)))
    worker = WorkerProcess(env, tmp / "worker.log").start()
    try:
        worker.wait_ready()
        wait_for_baselines(worker, s, 2)
        feed(broker.bootstrap, s, worker, messages, 240)
        yield Service(broker, env, s, worker, messages, baselines)
    finally:
        worker.stop()


def expected_alerts(snapshots: list[dict[str, Any]], section: str, breach: str) -> dict[tuple[Any, ...], list[str]]:
    """(tenant, model, segment, feature or metric) -> the segments listed, of the grouped events
    the snapshots call for: the overall check in breach is one event listing the segments in
    breach; a segment's check in breach is an event of its own only when the overall is not."""
    in_breach = {(s["tenantId"], s["modelId"], s["modelVersion"], s["segment"], name)
                 for s in snapshots for name, v in (s[section] or {}).items() if v and v["status"] == breach}
    out: dict[tuple[Any, ...], list[str]] = {}
    for tenant, model, version, segment, name in in_breach:
        if segment is None:
            out[(tenant, model, None, name)] = sorted(
                seg for t, m, v, seg, n in in_breach if (t, m, v, n) == (tenant, model, version, name) and seg)
        elif (tenant, model, version, None, name) not in in_breach:
            out[(tenant, model, segment, name)] = []
    return out


def grouped(events: list[dict[str, Any]], subject: str) -> dict[tuple[Any, ...], list[str]]:
    return {(e["tenantId"], e["modelId"], e["segment"], e[subject]): [s["segment"] for s in e.get("segments", [])]
            for e in events}


def write_check_inputs(svc: Service, tmp: Path, tenant: str, model: str) -> tuple[Path, Path]:
    """The window's first prediction per predictionId and first outcome per predictionId."""
    preds: dict[str, bytes] = {}
    outs: dict[str, bytes] = {}
    for m in svc.messages:
        doc = orjson.loads(m.value)
        if doc["tenantId"] != tenant or doc["modelId"] != model:
            continue
        if m.kind == "features":
            ts = parse_timestamp_ms(doc["timestamp"])
            if END_MS - 7 * DAY_MS <= ts < END_MS:
                preds.setdefault(doc["predictionId"], m.value)
        else:
            outs.setdefault(doc["predictionId"], m.value)
    current, outcomes = tmp / f"{tenant}-{model}.jsonl", tmp / f"{tenant}-{model}-outcomes.jsonl"
    current.write_bytes(b"\n".join(preds.values()) + b"\n")
    outcomes.write_bytes(b"\n".join(v for k, v in outs.items() if k in preds) + b"\n")
    return current, outcomes


def offline_check(svc: Service, tmp: Path, tenant: str, model: str, segment: str | None = None) -> dict[str, Any]:
    baseline_file = tmp / f"{model}.baseline.json"
    baseline_file.write_bytes(orjson.dumps(svc.baselines[(model, "3")].to_dict()))
    current, outcomes = write_check_inputs(svc, tmp, tenant, model)
    cmd = [sys.executable, "-m", "model_monitoring.commands.cli", "check", "--baseline", str(baseline_file),
           "--current", str(current), "--outcomes", str(outcomes), "--format", "json",
           "--performance-window", "prediction"]  # the window's predictions, as the files hold
    if segment:
        cmd += ["--segment", segment]
    out = subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return orjson.loads(out.stdout)


def test_run_publishes_exactly_the_expected_alerts(service: Service, tmp_path: Path) -> None:
    service.trigger("scenario-1")
    done = service.completion("scenario-1")
    drift = service.events(service.s.drift_topic, "scenario-1")
    degraded = service.events(service.s.degraded_topic, "scenario-1")
    snapshots = service.events(service.s.snapshot_topic, "scenario-1")

    whole = {(d["tenantId"], d["modelId"], d["feature"]) for d in drift if d["segment"] is None}
    assert whole == {("acme", "risk-scoring", "pipeline_value"), ("globex", "churn", "lead_source")}
    assert {(d["tenantId"], d["modelId"]) for d in degraded} == {("acme", "churn")}
    assert {d["metric"] for d in degraded if d["segment"] is None} == {"brier", "mae", "ece"}
    assert not [d for d in drift + degraded if d["tenantId"] == "initech"]
    initech = [s for s in snapshots if s["tenantId"] == "initech" and s["segment"] is None]
    assert sorted(s["modelId"] for s in initech) == ["churn", "risk-scoring"]
    assert {f["status"] for s in initech for f in s["features"].values()} == {"insufficient_data"}

    # every snapshot (segment null) equals the offline check of the same data
    for snap in (s for s in snapshots if s["segment"] is None):
        offline = offline_check(service, tmp_path, snap["tenantId"], snap["modelId"])
        for name, verdict in snap["features"].items():
            theirs = offline["features"][name]
            assert (verdict["value"], verdict["status"], verdict["sampleSize"]) == \
                   (theirs["value"], theirs["status"], theirs["sampleSize"]), (snap["tenantId"], name)
        # the stream's prediction-window view (the configured view is the outcome-arrival one;
        # label_coverage needs the cohorts before the window, which the files do not hold)
        for metric, verdict in snap["performanceViews"]["prediction"].items():
            if metric == "label_coverage":
                continue
            theirs = offline["performance"][metric]
            assert (verdict["value"], verdict["sampleSize"]) == \
                   (theirs["value"], theirs["sampleSize"]), (snap["tenantId"], metric)
    # one segment too
    seg = next(s for s in snapshots if (s["tenantId"], s["modelId"], s["segment"]) == ("acme", "risk-scoring", "emea"))
    offline = offline_check(service, tmp_path, "acme", "risk-scoring", "emea")
    assert seg["features"]["pipeline_value"]["value"] == offline["features"]["pipeline_value"]["value"]

    # the alerts are exactly the snapshots' drift/degraded verdicts, grouped, each once, each
    # opening an incident of its own (the first run of this week on this service)
    assert grouped(drift, "feature") == expected_alerts(snapshots, "features", "drift")
    assert grouped(degraded, "metric") == expected_alerts(snapshots, "performance", "degraded")
    assert any(d["segments"] for d in drift), "the drifts should show in segments too"
    assert len(drift) < sum(1 for s in snapshots for v in s["features"].values() if v["status"] == "drift")
    assert len({d["eventId"] for d in drift + degraded}) == len(drift) + len(degraded)
    assert {d["incidentStatus"] for d in drift + degraded} == {"opened"}
    assert len({d["incidentId"] for d in drift + degraded}) == len(drift) + len(degraded)
    counts = Counter()
    for s in snapshots:
        counts["driftChecked"] += sum(1 for v in s["features"].values() if v["status"] != "no_baseline")
        counts["performanceChecked"] += len(s["performance"])
        counts["driftDetected"] += sum(1 for v in s["features"].values() if v["status"] == "drift")
        counts["performanceDegraded"] += sum(1 for v in s["performance"].values() if v["status"] == "degraded")
    assert done["driftChecked"] == counts["driftChecked"] > 0
    assert done["performanceChecked"] == counts["performanceChecked"] > 0
    # the counts are of checks (overall and per segment), not of the grouped events
    assert done["driftDetected"] == counts["driftDetected"] and done["performanceDegraded"] == counts["performanceDegraded"]
    assert done["tenants"] == ["acme", "globex", "initech"]
    log = [d for d in service.worker.json_lines() if d.get("message") == "model-monitoring completed"
           and d.get("jobRunId") == "scenario-1"]
    assert [entry["driftChecked"] for entry in log] == [done["driftChecked"]]


def test_duplicate_trigger_publishes_nothing_twice(service: Service) -> None:
    for _ in range(3):
        service.trigger("dup-1")
    done = service.completion("dup-1")
    service.settle()  # the two duplicates were consumed too: anything they published is out
    drift = service.events(service.s.drift_topic, "dup-1")
    degraded = service.events(service.s.degraded_topic, "dup-1")
    snaps = service.events(service.s.snapshot_topic, "dup-1")
    assert len(service.events(service.s.completed_topic, "dup-1")) == 1
    assert service.events(service.s.failed_topic, "dup-1") == []
    per_event = Counter(d["eventId"] for d in drift + degraded)
    assert set(per_event.values()) == {1}
    per_snapshot = Counter((s["tenantId"], s["modelId"], s["modelVersion"], s["segment"]) for s in snaps)
    assert set(per_snapshot.values()) == {1}
    # one alert per feature or metric in breach, no more
    assert Counter((d["tenantId"], d["modelId"], d["segment"], d["feature"]) for d in drift) == Counter(
        list(expected_alerts(snaps, "features", "drift")))
    assert grouped(drift, "feature") == expected_alerts(snaps, "features", "drift")
    assert grouped(degraded, "metric") == expected_alerts(snaps, "performance", "degraded")
    assert {(d["tenantId"], d["modelId"]) for d in degraded} == {("acme", "churn")}
    assert done["driftDetected"] == sum(1 for s in snaps for v in s["features"].values() if v["status"] == "drift")
    # the incidents: opened by this run, or, when scenario-1 ran on this service before, its
    # incidents going on under the same ids (same week, same data: no new alert)
    earlier = {(d["tenantId"], d["modelId"], d["segment"], d.get("feature") or d["metric"]): d["incidentId"]
               for topic in (service.s.drift_topic, service.s.degraded_topic)
               for d in service.events(topic, "scenario-1")}
    for d in drift + degraded:
        key = (d["tenantId"], d["modelId"], d["segment"], d.get("feature") or d["metric"])
        if earlier:
            assert (d["incidentStatus"], d["incidentId"]) == ("ongoing", earlier[key])
        else:
            assert d["incidentStatus"] == "opened"


def test_tenant_filter(service: Service) -> None:
    service.trigger("only-globex", ["globex"])
    done = service.completion("only-globex")
    assert done["tenants"] == ["globex"]
    drift = service.events(service.s.drift_topic, "only-globex")
    snapshots = service.events(service.s.snapshot_topic, "only-globex")
    assert {d["tenantId"] for d in drift + snapshots} == {"globex"}
    assert {(d["modelId"], d["feature"]) for d in drift if d["segment"] is None} == {("churn", "lead_source")}
    assert sorted(s["modelId"] for s in snapshots if s["segment"] is None) == ["churn", "risk-scoring"]
    assert service.events(service.s.degraded_topic, "only-globex") == []  # only acme:churn degrades
    assert grouped(drift, "feature") == expected_alerts(snapshots, "features", "drift")
    in_drift = sum(1 for s in snapshots for v in s["features"].values() if v["status"] == "drift")
    assert (done["driftDetected"], done["performanceDegraded"]) == (in_drift, 0)


def test_http_route_with_good_and_bad_tokens(service: Service) -> None:
    w = service.worker
    good = service.token()
    status, body = w.post(RUN, orjson.dumps({"tenantIds": ["acme"]}), {"Authorization": f"Bearer {good}"},
                          timeout=90)
    assert status == 200, body  # held until the run's end: the answer is its completion message
    job_run_id = orjson.loads(body)["jobRunId"]
    done = service.completion(job_run_id)
    assert done["tenants"] == ["acme"] and orjson.loads(body) == done
    # once completed, always completed: the worker reads its own status writes back from the
    # changelog, and an earlier one (`running`, completion in the outbox) must not land on top
    # (regression: CI once read `running` here, tests/unit/test_own_writes.py)
    for _ in range(10):
        status, body = w.get(f"/api/v1/ml/model-monitoring/runs/{job_run_id}",
                             headers={"Authorization": f"Bearer {good}"})
        assert status == 200 and orjson.loads(body)["status"] == "completed"
        time.sleep(0.1)

    assert w.post(RUN, b"{}")[0] == 401
    assert w.post(RUN, b"{}", {"Authorization": f"Bearer {service.token(scope='other:thing')}"})[0] == 403
    assert w.post(RUN, b"{}", {"Authorization": f"Bearer {service.token(ttl_seconds=-120)}"})[0] == 401
    limited = service.token(tenant_ids=["globex"])
    assert w.post(RUN, orjson.dumps({"tenantIds": ["acme"]}), {"Authorization": f"Bearer {limited}"})[0] == 403
    assert w.post(RUN, b"not json", {"Authorization": f"Bearer {good}"})[0] == 400
    assert w.post(RUN, b"{" + b" " * 200_000 + b"}", {"Authorization": f"Bearer {good}"})[0] == 413
    assert w.get("/api/v1/ml/model-monitoring/runs/nope", headers={"Authorization": f"Bearer {good}"})[0] == 404
