"""docs/RUNBOOK.md's walkthrough, run verbatim against a worker on the embedded broker: every
command an on-call engineer is told to type works as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from model_monitoring.commands.broker import EmbeddedBroker
from model_monitoring.commands.harness import WorkerProcess, service_env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def walkthrough() -> str:
    text = (ROOT / "docs" / "RUNBOOK.md").read_text()
    match = re.search(r"<!-- walkthrough -->\s*```sh\n(.*?)```", text, re.S)
    assert match, "the runbook lost its walkthrough block"
    return match.group(1)


def test_runbook_walkthrough_runs_as_written(broker: EmbeddedBroker, unique: str, tmp_path: Path) -> None:
    env = service_env(broker.bootstrap, tmp_path / "data", app_id=f"{unique}-runbook",
                      extra={"MODEL_MONITORING_CRON_ENABLED": "false"})
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        shell_env = {k: v for k, v in env.items() if not k.startswith("MODEL_MONITORING_")}
        shell_env.update(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
                         MODEL_MONITORING_JWT_SECRET=env["MODEL_MONITORING_JWT_SECRET"],
                         WORKER=f"http://127.0.0.1:{worker.web_port}",
                         PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        script = "set -euo pipefail\n" + walkthrough()
        out = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=shell_env, capture_output=True,
                             text=True, timeout=300)
    finally:
        worker.stop()
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}\n{worker.log_tail()}"
    assert "published baseline *:churn:3" in out.stdout
    assert '"status":"completed"' in out.stdout
    assert "DEGRADED" in out.stdout  # tail printed the accuracy drop
    assert "feature" in out.stdout and "brier" in out.stdout  # the check table
