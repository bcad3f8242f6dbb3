"""The OpenAPI document of the worker's HTTP routes: served byte for byte as kept in the repo,
listing exactly the routes the app registers, and saying of the run route's 200 what the
`workflow.job.completed` schema says (the answer is that message)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
import pytest
import schemathesis
from aiohttp.test_utils import TestClient, TestServer

from model_monitoring.agents.service import build_app
from model_monitoring.schemas.validation import load_schema
from model_monitoring.streams.app import Monitor
from model_monitoring.streams.settings import load_settings
from model_monitoring.tables.job_run import JobRun

ROOT = Path(__file__).resolve().parents[2]
REPO_FILE = ROOT / "schemas" / "openapi.json"
DOC: dict[str, Any] = orjson.loads(REPO_FILE.read_bytes())
COMPLETED_EXAMPLE = {"job": "model-monitoring", "jobRunId": "http-0a1b", "tenants": ["tenant-1"],
                     "driftChecked": 40, "performanceChecked": 4, "driftDetected": 3,
                     "performanceDegraded": 1, "durationMs": 812, "completedAt": "2026-11-29T06:00:01.812Z"}


@pytest.fixture(scope="module")
def monitor() -> Monitor:
    return build_app(load_settings({"MODEL_MONITORING_JWT_SECRET": "openapi-test-secret-0123456789abcdef",
                                    "MODEL_MONITORING_STORE": "memory"}))


def component(name: str) -> Any:
    """A validator of one of the document's schemas, its $refs resolved inside the document."""
    return fastjsonschema.compile({"$ref": f"#/components/schemas/{name}", "components": DOC["components"]})


async def test_the_worker_serves_the_repo_file(monitor: Monitor) -> None:
    async with TestClient(TestServer(monitor.app.web.web_app)) as client:
        resp = await client.get("/openapi.json")
        assert resp.status == 200 and resp.content_type == "application/json"
        assert await resp.read() == REPO_FILE.read_bytes()


def test_the_document_lists_exactly_the_routes_the_app_serves(monitor: Monitor) -> None:
    def shape(path: str) -> str:
        return re.sub(r"\{[^}]+\}", "{}", path)

    served = {shape(path): {m for m in view.get_methods() if m != "HEAD"}
              for path, view in monitor.app.web.views.items()}
    documented = {shape(path): {m.upper() for m in item} for path, item in DOC["paths"].items()}
    assert documented == served


def test_schemathesis_loads_every_operation() -> None:
    operations = [result.ok() for result in schemathesis.openapi.from_dict(DOC).get_all_operations()]
    assert len(operations) == sum(len(item) for item in DOC["paths"].values())


def test_the_synchronous_answer_is_the_completion_message() -> None:
    completed = load_schema("completed")
    run_completed = DOC["components"]["schemas"]["RunCompleted"]
    assert run_completed["required"] == completed["required"]
    assert set(run_completed["properties"]) == set(completed["properties"])
    component("RunCompleted")(COMPLETED_EXAMPLE)
    with pytest.raises(fastjsonschema.JsonSchemaException):
        component("RunCompleted")({k: v for k, v in COMPLETED_EXAMPLE.items() if k != "tenants"})


def test_the_run_status_schema_describes_a_summary() -> None:
    run = JobRun(job_run_id="r1", window_start_ms=0, window_end_ms=1, tenant_ids=None, source="http",
                 started_ms=1, deadline_ms=2, partitions=4)
    component("RunStatus")(run.summary())
    component("RunStatus")(run.summary(["acme"]))
    assert set(DOC["components"]["schemas"]["RunStatus"]["properties"]) == set(run.summary())
