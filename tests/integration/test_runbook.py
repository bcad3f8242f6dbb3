"""docs/RUNBOOK.md's walkthrough, run verbatim against a worker on the embedded broker: every
command an on-call engineer is told to type works as written, and what it prints is what the
service published."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import WorkerProcess, read_topic, service_env
from model_monitoring.commands.offline_render import render_table
from model_monitoring.commands.tail_format import format_event
from model_monitoring.streams.settings import load_settings
from tests.support.waiting import until_consumed

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TENANTS = ["acme", "globex", "initech"]  # `model-monitoring simulate`'s default tenants


def walkthrough() -> str:
    text = (ROOT / "docs" / "RUNBOOK.md").read_text()
    match = re.search(r"<!-- walkthrough -->\s*```sh\n(.*?)```", text, re.S)
    assert match, "the runbook lost its walkthrough block"
    return match.group(1)


def split_output(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON objects a script printed (curl's responses, which end without a newline, so the
    next output follows on the same line) and its other lines."""
    decoder, objects, lines = json.JSONDecoder(), [], []
    for line in text.splitlines():
        while line.startswith("{"):
            obj, end = decoder.raw_decode(line)
            objects.append(obj)
            line = line[end:]
        if line:
            lines.append(line)
    return objects, lines


def test_runbook_walkthrough_runs_as_written(broker: Broker, unique: str, tmp_path: Path) -> None:
    env = service_env(broker, tmp_path / "data", app_id=f"{unique}-runbook",
                      extra={"MODEL_MONITORING_CRON_ENABLED": "false"})
    s = load_settings(env)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        shell_env = {k: v for k, v in env.items() if not k.startswith("MODEL_MONITORING_")}
        shell_env.update(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
                         MODEL_MONITORING_JWT_SECRET=env["MODEL_MONITORING_JWT_SECRET"],
                         MODEL_MONITORING_APP_ID=env["MODEL_MONITORING_APP_ID"],  # the group `--after-ingest` watches
                         WORKER=f"http://127.0.0.1:{worker.web_port}",
                         PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        script = "set -euo pipefail\n" + walkthrough()
        out = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=shell_env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, f"{out.stdout}\n{out.stderr}\n{worker.log_tail()}"
        # both runs (the trigger's and the HTTP route's) have published all they will
        asyncio.run(until_consumed(broker.bootstrap, s.app_id, [s.trigger_topic, s.runs_topic,
                                   s.snapshot_requests_topic, s.snapshot_parts_topic], 120,
                                   failure=worker.log_tail))
    finally:
        worker.stop()

    def published(topic: str) -> list[Any]:
        return asyncio.run(read_topic(broker.bootstrap, topic, timeout=60))

    # 1. the baseline file, as published under its key
    [baseline] = [r for r in published(s.baselines_topic) if r.key == b"*:churn:3"]
    assert orjson.loads(baseline.value) == orjson.loads((tmp_path / "churn-v3.json").read_bytes())
    responses, lines = split_output(out.stdout)
    assert f"published baseline *:churn:3 to {s.baselines_topic}" in lines

    # 3. the run: the status the route printed, and its completion
    completions = [orjson.loads(r.value) for r in published(s.completed_topic)]
    [done] = [c for c in completions if c["jobRunId"] == "manual-1"]
    assert done["tenants"] == TENANTS
    [answered] = [r for r in responses if r.get("job") == "model-monitoring"]  # the route's 200: the completion
    assert answered["tenants"] == ["acme"]
    assert [c for c in completions if c["jobRunId"] == answered["jobRunId"]] == [answered]
    status = [r for r in responses if r.get("jobRunId") == "manual-1" and "status" in r][-1]
    assert status["status"] == "completed" and status["error"] is None
    for count in ("driftChecked", "performanceChecked", "driftDetected", "performanceDegraded"):
        assert status[count] == done[count], count

    # 4. the accuracy drop of acme:churn, and nothing else, degraded; the tail printed two of them
    runs = {"manual-1", answered["jobRunId"]}
    on_topic = [orjson.loads(r.value) for r in published(s.degraded_topic)]
    degraded = [d for d in on_topic if d["jobRunId"] in runs]
    mine = [d for d in degraded if d["jobRunId"] == "manual-1"]
    assert {(d["tenantId"], d["modelId"]) for d in degraded} == {("acme", "churn")}
    # one event per metric (brier, ece: the drop also miscalibrates, mae), the segments degraded
    # too listed inside; the run's count is of the checks in breach, overall and per segment
    assert sorted((d["metric"], d["segment"]) for d in mine) == [("brier", None), ("ece", None), ("mae", None)]
    assert done["performanceDegraded"] == sum(1 + len(d["segments"]) for d in mine)
    # the two runs of the same week (manual-1 and the route's, in either order): one opened each
    # incident, the other published it as ongoing, under the same id
    for metric in ("brier", "ece", "mae"):
        both = [d for d in degraded if (d["metric"], d["segment"]) == (metric, None)]
        assert len({d["incidentId"] for d in both}) == 1
        assert sorted(d["incidentStatus"] for d in both) == ["ongoing", "opened"], both
    tail_lines = [line for line in lines if " DEGRADED " in line]
    assert len(tail_lines) == 2 and set(tail_lines) <= {format_event("degraded", d) for d in on_topic}, tail_lines

    # 5. the check table is the offline snapshot of the reference against its own baseline: no drift
    check = subprocess.run([sys.executable, "-m", "model_monitoring.commands.cli", "check", "--baseline",
                            "churn-v3.json", "--current", "reference.jsonl", "--format", "json"],
                           cwd=tmp_path, capture_output=True, check=True, timeout=120)
    snapshot = orjson.loads(check.stdout)
    assert out.stdout.endswith(render_table(snapshot))
    assert {name: f["status"] for name, f in snapshot["features"].items()} == \
        {name: "ok" for name in orjson.loads(baseline.value)["features"]}
    assert {name: f["value"] for name, f in snapshot["features"].items()} == \
        {name: 0.0 for name in snapshot["features"]}
