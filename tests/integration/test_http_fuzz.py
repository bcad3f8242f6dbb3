"""schemathesis fuzzes a running worker against the OpenAPI document kept in the repo
(`schemas/openapi.json`, which the worker serves as GET /openapi.json): every operation, with a
valid service token, in all four phases (the document's examples, boundary and negative
coverage, random fuzzing, and stateful sequences that follow the links from a run to its
status). No generated request may get a 5xx, and every response must match the document:
status code, content type and body schema.

The run route holds each request until its run ends (~2 s on the embedded broker), so the
number of examples is bounded to keep the fuzz under a minute. The seed is fixed, so a failure
reproduces; schemathesis prints a curl command for each."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import WorkerProcess, service_env
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import load_settings
from model_monitoring.streams.tokens import mint_token

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DOCUMENT = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SEED = 20261129
# per phase: the coverage phase's cases are fixed by the document; these bound the others
CONFIG = """\
[generation]
database = "none"

[phases.fuzzing.generation]
max-examples = 5

[phases.stateful]
max-steps = 3

[phases.stateful.generation]
max-examples = 3
"""


@pytest.fixture(scope="module")
def worker(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    tmp = tmp_path_factory.mktemp("fuzz")
    env = service_env(broker, tmp / "data", app_id="fuzz-mm", topic_prefix="fuzz.",
                      extra={"MODEL_MONITORING_PARTITIONS": "1", "MODEL_MONITORING_CRON_ENABLED": "false"})
    asyncio.run(ensure_topics(load_settings(env)))
    w = WorkerProcess(env, tmp / "worker.log").start()
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()


def test_the_worker_serves_the_document_it_is_fuzzed_against(worker: WorkerProcess) -> None:
    status, body = worker.get("/openapi.json")
    assert status == 200 and body == DOCUMENT.read_bytes()


def test_schemathesis_finds_no_5xx_and_no_response_off_the_document(worker: WorkerProcess, tmp_path: Path) -> None:
    token = mint_token(worker.env["MODEL_MONITORING_JWT_SECRET"], ttl_seconds=600)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    junit = tmp_path / "junit.xml"
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", str(DOCUMENT),
           "--url", f"http://127.0.0.1:{worker.web_port}", "--checks", CHECKS,
           "--header", f"Authorization: Bearer {token}", "--seed", str(SEED), "--workers", "1",
           "--request-timeout", "90", "--report", "junit", "--report-junit-path", str(junit)]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=200)
    report = out.stdout + out.stderr
    assert out.returncode == 0, f"{report[-12000:]}\n--- worker log:\n{worker.log_tail()}"
    cases = re.search(r"(\d+) generated, (\d+) passed", report)
    assert cases is not None, report[-3000:]
    generated, passed = map(int, cases.groups())
    assert generated == passed > 50
    print(f"schemathesis: {generated} cases generated, {passed} passed")  # shown with -rP / -s
    tested = set(re.findall(r'<testcase name="([A-Z]+ [^"]+)"', junit.read_text()))
    documented = {f"{method.upper()} {path}" for path, item in orjson.loads(DOCUMENT.read_bytes())["paths"].items()
                  for method in item}
    assert tested == documented
