"""The caller that exists: the platform's batch-job worker POSTs …/run with nothing special and
logs `model-monitoring completed` with `tenants`, `driftChecked` and `performanceChecked` from
the answer. Two workers in one group share the partitions; the caller talks to either. The
answer is the run's workflow.job.completed, whichever worker tracked the run, and a retry with
the same Idempotency-Key (on the same worker or the other one, in turn or at the same time)
starts no second run."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from model_monitoring.commands.broker import Broker, free_port
from model_monitoring.commands.harness import WorkerProcess, produce, read_topic
from model_monitoring.commands.simulate import DAY_MS, Scenario, StreamConfig, generate
from model_monitoring.streams.settings import Settings
from model_monitoring.streams.tokens import mint_token
from tests.support.baselines import provisioned
from tests.support.waiting import until_consumed, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RUN = "/api/v1/ml/model-monitoring/run"
# the caller sends no windowEnd: the window is the 7 days before now, so the stream ends today
END_MS = (int(time.time() * 1000) // DAY_MS) * DAY_MS
TENANTS = ["acme", "globex", "initech"]


class Platform:
    """Two workers, and the caller's view of them."""

    def __init__(self, broker: Broker, s: Settings, workers: list[WorkerProcess]) -> None:
        self.broker, self.s, self.workers = broker, s, workers

    def post(self, worker: int, key: str | None = None, prefer: str | None = None,
             body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        w = self.workers[worker]
        headers = {"Authorization": f"Bearer {mint_token(w.env['MODEL_MONITORING_JWT_SECRET'], subject='batch-jobs')}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        if prefer is not None:
            headers["Prefer"] = prefer
        status, raw = w.post(RUN, orjson.dumps(body) if body is not None else b"", headers, timeout=90)
        return status, orjson.loads(raw)

    def read(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in asyncio.run(read_topic(self.broker.bootstrap, topic, timeout=60))]

    def settle(self) -> None:
        """Every trigger and internal message consumed: whatever they publish is out."""
        s = self.s
        asyncio.run(until_consumed(self.broker.bootstrap, s.app_id, [s.trigger_topic, s.runs_topic,
                                   s.snapshot_requests_topic, s.snapshot_parts_topic], 120, failure=self.logs))

    def tracked_by(self, job_run_id: str) -> list[int]:
        """The workers that logged the run's completion (the one whose runs partition it is)."""
        return [i for i, w in enumerate(self.workers) if any(
            d.get("message") == "model-monitoring completed" and d.get("jobRunId") == job_run_id
            for d in w.json_lines())]

    def wait_tracked(self, job_run_id: str) -> list[int]:
        wait_until(lambda: bool(self.tracked_by(job_run_id)), 30, every=0.5, failure=self.logs)
        return self.tracked_by(job_run_id)

    def logs(self) -> str:
        return "\n---\n".join(w.log_tail() for w in self.workers)


@pytest.fixture(scope="module")
def platform(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("caller")
    env, s, _ = provisioned(broker, tmp / "a", "caller")
    second = dict(env, MODEL_MONITORING_DATA_DIR=str(tmp / "b"), MODEL_MONITORING_WEB_PORT=str(free_port()))
    workers = [WorkerProcess(env, tmp / "a.log").start(), WorkerProcess(second, tmp / "b.log").start()]
    p = Platform(broker, s, workers)
    try:
        for w in workers:
            w.wait_ready()
        asyncio.run(until_consumed(broker.bootstrap, s.app_id, [s.baselines_topic], 60, failure=p.logs))
        # a realistic small stream: two weeks, three tenants, two models, one accuracy drop
        messages = generate(StreamConfig(events_per_key=800, days=14, end_ms=END_MS, seed=5,
                                         scenario=Scenario(accuracy_drop=("acme:churn",))))
        topic_of = {"features": s.features_topic, "outcomes": s.outcomes_topic}
        asyncio.run(produce(broker.bootstrap, [(topic_of[m.kind], m.key, m.value) for m in messages]))
        asyncio.run(until_consumed(broker.bootstrap, s.app_id, [s.features_topic, s.outcomes_topic], 180,
                                   failure=p.logs))
        for w in workers:  # both in the group again after any rebalance
            w.wait_ready()
        yield p
    finally:
        for w in workers:
            w.stop()


def test_a_plain_post_answers_with_the_completion_whichever_worker_tracks_the_run(platform: Platform) -> None:
    answers: dict[str, dict[str, Any]] = {}
    elsewhere = None
    for _ in range(8):  # until a run tracked by the other worker has answered too
        status, body = platform.post(0)  # what the batch-job worker sends: no Prefer, no key, empty body
        assert status == 200, (body, platform.logs())
        answers[body["jobRunId"]] = body
        if platform.wait_tracked(body["jobRunId"]) == [1]:
            elsewhere = body["jobRunId"]
            break
    assert elsewhere is not None, f"no run of {len(answers)} landed on the second worker"
    completions = {c["jobRunId"]: c for c in platform.read(platform.s.completed_topic)}
    for job_run_id, body in answers.items():
        assert body == completions[job_run_id]  # the answer is the run's workflow.job.completed
        assert body["tenants"] == TENANTS
        assert body["driftChecked"] > 0 and body["performanceChecked"] > 0
        assert body["performanceDegraded"] > 0  # acme:churn's accuracy drop
    # the fields the caller logs, as the service's own runbook line has them
    [line] = [d for d in platform.workers[1].json_lines()
              if d.get("message") == "model-monitoring completed" and d.get("jobRunId") == elsewhere]
    assert {k: line[k] for k in ("tenants", "driftChecked", "performanceChecked")} == \
        {k: answers[elsewhere][k] for k in ("tenants", "driftChecked", "performanceChecked")}


def test_a_retry_with_the_same_key_starts_no_second_run(platform: Platform) -> None:
    status, first = platform.post(0, key="weekly-2026-11-29")
    assert status == 200, first
    retried = [platform.post(1, key="weekly-2026-11-29"), platform.post(0, key="weekly-2026-11-29")]
    assert retried == [(200, first)] * 2
    assert platform.post(1, key="weekly-2026-11-29", body={"tenantIds": ["acme"]})[0] == 422

    # two at once, on both workers, before either knows the run
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda w: platform.post(w, key="weekly-2026-12-06", body={"tenantIds": ["acme"]}),
                             [0, 1]))
    assert both[0] == both[1] and both[0][0] == 200 and both[0][1]["tenants"] == ["acme"]

    platform.settle()
    runs = {first["jobRunId"], both[0][1]["jobRunId"]}
    completed = Counter(c["jobRunId"] for c in platform.read(platform.s.completed_topic) if c["jobRunId"] in runs)
    assert completed == {job_run_id: 1 for job_run_id in runs}
    assert [f for f in platform.read(platform.s.failed_topic) if f["jobRunId"] in runs] == []
    triggers = Counter(t["jobRunId"] for t in platform.read(platform.s.trigger_topic) if t["jobRunId"] in runs)
    assert triggers[first["jobRunId"]] == 1  # the retries in turn found the run and published nothing
    assert 1 <= triggers[both[0][1]["jobRunId"]] <= 2  # at the same time: a start the tracker ignored


def test_respond_async_and_the_status_route_on_the_other_worker(platform: Platform) -> None:
    before_ms = int(time.time() * 1000)
    status, accepted = platform.post(0, prefer="respond-async", body={"tenantIds": ["globex"]})
    assert status == 202 and accepted["tenantIds"] == ["globex"]
    location = f"/api/v1/ml/model-monitoring/runs/{accepted['jobRunId']}"
    other = platform.workers[1]
    auth = {"Authorization": f"Bearer {mint_token(other.env['MODEL_MONITORING_JWT_SECRET'])}"}

    def completed() -> bool:
        status, body = other.get(location, headers=auth)
        return status == 200 and orjson.loads(body)["status"] == "completed"

    wait_until(completed, 60, every=0.5, failure=platform.logs)
    summary = orjson.loads(other.get(location, headers=auth)[1])
    assert summary["tenants"] == ["globex"] and summary["source"] == "http"
    # the trigger's time, rounded down to the day (the day the POST was made: a run can straddle midnight)
    after_ms = int(time.time() * 1000)
    assert summary["windowEndMs"] in {before_ms // DAY_MS * DAY_MS, after_ms // DAY_MS * DAY_MS}
    assert summary["performanceChecked"] > 0
