"""The run route over real HTTP (aiohttp's test server around the faust app's web app), with the
job tracker played by a fake that folds each trigger through the real state machine and writes
the run-status table as `agents/run.py` does: the synchronous answer, the asynchronous forms,
the failure, and the Idempotency-Key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from model_monitoring.agents import run_route
from model_monitoring.schemas.validation import Validators
from model_monitoring.streams.auth import AuthConfig, TokenVerifier
from model_monitoring.streams.settings import load_settings
from model_monitoring.streams.tokens import mint_token
from model_monitoring.tables import job_run as tr
from model_monitoring.tables.keys import RunStatusKey
from model_monitoring.tables.trigger import plan_run

SECRET = "agent-test-secret-0123456789abcdef0123"
RUN = "/api/v1/ml/model-monitoring/run"


class FakeTracker:
    """The trigger topic and the job tracker behind it: a start of a known jobRunId is ignored
    (`tables/job_run.start`); a run ends `delay` seconds after its trigger."""

    def __init__(self, run_status: dict[bytes, bytes], delay: float = 0.2, fail: bool = False) -> None:
        self.run_status, self.delay, self.fail = run_status, delay, fail
        self.triggers: list[dict[str, Any]] = []
        self.runs: dict[str, tr.JobRun] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def send(self, key: bytes, value: bytes) -> None:
        doc = orjson.loads(value)
        self.triggers.append(doc)
        self.tasks.append(asyncio.create_task(self.track(doc)))

    async def track(self, doc: dict[str, Any]) -> None:
        now = int(time.time() * 1000)
        plan = plan_run(doc, job_run_id=doc["jobRunId"], now_ms=now, window_ms=7 * 86_400_000,
                        bucket_ms=86_400_000, deadline_ms=900_000, partitions=1, source="http")
        run, actions = tr.start(self.runs.get(plan.job_run_id), plan)
        if plan.job_run_id in self.runs:
            return  # a duplicate start
        self.runs[run.job_run_id] = run
        self.save(run)
        await asyncio.sleep(self.delay)
        if self.fail:
            run, _ = tr.check_deadline(run, run.deadline_ms)
            self.save(run)
        else:
            reports = {0: [f"{t}:churn" for t in run.tenant_ids or ("acme", "globex")]}
            run, _ = tr.report(run, 0, reports, lambda key: True, now + 500)
            self.save(run, tr.tenants_of(run, reports))

    def save(self, run: tr.JobRun, tenants: list[str] | None = None) -> None:
        self.run_status[RunStatusKey(run.job_run_id).encode()] = orjson.dumps(run.summary(tenants))


class Route:
    def __init__(self, client: TestClient, tracker: FakeTracker) -> None:
        self.client, self.tracker = client, tracker

    async def post(self, body: Any = None, token: str | None = None, **headers: str) -> tuple[int, Any, Any]:
        headers = {k.replace("_", "-"): v for k, v in headers.items()}
        headers["Authorization"] = f"Bearer {token or mint_token(SECRET)}"
        data = orjson.dumps(body) if body is not None else b""
        resp = await self.client.post(RUN, data=data, headers=headers)
        return resp.status, await resp.json(), resp.headers


async def route(run_wait_seconds: float = 60.0, **tracker_args: Any) -> AsyncIterator[Route]:
    settings = load_settings({"MODEL_MONITORING_JWT_SECRET": SECRET,
                              "MODEL_MONITORING_RUN_WAIT_SECONDS": str(run_wait_seconds)})
    app = faust.App("run-route-test")  # never started: its aiohttp app serves the test
    run_status: dict[bytes, bytes] = {}
    tracker = FakeTracker(run_status, **tracker_args)
    monitor = SimpleNamespace(app=app, settings=settings, tables=SimpleNamespace(run_status=run_status),
                              topics=SimpleNamespace(trigger=tracker))

    def refuse(view: Any, status: int, code: str, message: str) -> Any:
        return view.json({"error": code, "message": message}, status=status)

    run_route.register(monitor, TokenVerifier(AuthConfig.from_settings(settings)), refuse)  # type: ignore[arg-type]
    async with TestClient(TestServer(app.web.web_app)) as client:
        yield Route(client, tracker)
    for task in tracker.tasks:
        task.cancel()


@pytest.fixture
async def api() -> AsyncIterator[Route]:
    async for r in route():
        yield r


async def test_a_plain_post_answers_with_the_completion(api: Route) -> None:
    status, body, _ = await api.post()
    assert status == 200, body
    Validators().validate("completed", body)
    assert body["tenants"] == ["acme", "globex"] and body["jobRunId"].startswith("http-")
    assert (body["driftChecked"], body["performanceChecked"]) == (0, 0)
    assert [t["jobRunId"] for t in api.tracker.triggers] == [body["jobRunId"]]
    status, body, _ = await api.post({"tenantIds": ["globex"]})
    assert status == 200 and body["tenants"] == ["globex"]


async def test_respond_async_answers_202_with_the_status_location(api: Route) -> None:
    status, body, headers = await api.post(Prefer="respond-async")
    assert status == 202 and body["tenantIds"] is None
    assert headers["Location"] == f"/api/v1/ml/model-monitoring/runs/{body['jobRunId']}"
    assert headers["Preference-Applied"] == "respond-async"
    auth = {"Authorization": f"Bearer {mint_token(SECRET)}"}
    for _ in range(50):
        resp = await api.client.get(headers["Location"], headers=auth)
        if resp.status == 200 and (await resp.json())["status"] == "completed":
            break
        await asyncio.sleep(0.1)
    summary = await resp.json()
    assert summary["status"] == "completed" and summary["tenants"] == ["acme", "globex"]


async def test_when_the_wait_runs_out_the_answer_is_202() -> None:
    async for api in route(delay=5.0):
        started = time.monotonic()
        status, body, headers = await api.post(Prefer="wait=1")
        assert status == 202 and 0.9 < time.monotonic() - started < 3.0
        assert headers["Location"].endswith(body["jobRunId"]) and headers["Preference-Applied"] == "wait=1"
    async for api in route(run_wait_seconds=0.0, delay=5.0):  # the setting, for a caller that sends nothing
        started = time.monotonic()
        assert (await api.post())[0] == 202 and time.monotonic() - started < 1.0


async def test_a_failed_run_answers_500_with_its_reason() -> None:
    async for api in route(fail=True):
        status, body, _ = await api.post()
        assert status == 500 and body["error"] == "run_failed"
        assert "deadline" in body["message"] and body["jobRunId"].startswith("http-")


async def test_the_same_idempotency_key_answers_for_the_same_run(api: Route) -> None:
    first = await api.post({"tenantIds": ["acme"]}, Idempotency_Key="weekly-2026-11-29")
    again = await api.post({"tenantIds": ["acme"]}, Idempotency_Key="weekly-2026-11-29")
    assert first[0] == again[0] == 200 and first[1] == again[1]
    assert len(api.tracker.triggers) == 1  # the retry found the run and published nothing
    other = await api.post({"tenantIds": ["acme"]}, Idempotency_Key="weekly-2026-12-06")
    assert other[1]["jobRunId"] != first[1]["jobRunId"]
    someone_else = await api.post({"tenantIds": ["acme"]}, mint_token(SECRET, subject="other-service"),
                                  Idempotency_Key="weekly-2026-11-29")
    assert someone_else[1]["jobRunId"] not in (first[1]["jobRunId"], other[1]["jobRunId"])
    status, body, _ = await api.post({"tenantIds": ["globex"]}, Idempotency_Key="weekly-2026-11-29")
    assert status == 422 and body["error"] == "idempotency_key_reused"
    assert len(api.tracker.runs) == 3


async def test_concurrent_retries_start_one_run(api: Route) -> None:
    answers = await asyncio.gather(*(api.post(Idempotency_Key="k-1") for _ in range(3)))
    assert {a[0] for a in answers} == {200} and len({a[1]["jobRunId"] for a in answers}) == 1
    assert len(api.tracker.runs) == 1  # each may have published a trigger; one run started


async def test_a_malformed_idempotency_key_is_refused(api: Route) -> None:
    status, body, _ = await api.post(Idempotency_Key="x" * 256)
    assert status == 400 and body["error"] == "invalid_idempotency_key"
    assert api.tracker.triggers == []
