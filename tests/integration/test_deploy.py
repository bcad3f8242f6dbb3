"""The dashboards against a running worker on the bundled broker: every metric a panel queries
is on its /metrics page (tests/unit/test_deploy_files.py checks the files without a broker)."""

from __future__ import annotations

import pytest

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import WorkerProcess, service_env
from tests.support.dashboards import PROMETHEUS_SYNTHETIC, exported_names, queried_names

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker_metrics(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The /metrics page of a worker on the bundled broker (also checks /healthz, which the
    Docker and Compose health checks call)."""
    workdir = tmp_path_factory.mktemp("deploy")
    env = service_env(broker, workdir / "data", app_id="deploy-mm",
                      topic_prefix="deploy.", extra={
                          "MODEL_MONITORING_PARTITIONS": "2",
                          # like the Compose file: the HTTP route refuses to start without auth
                          "MODEL_MONITORING_JWT_SECRET": "test-only-jwt-secret-0123456789abcdef"})
    worker = WorkerProcess(env, workdir / "worker.log").start()
    try:
        worker.wait_ready()
        status, _ = worker.get("/healthz")
        assert status == 200, worker.log_tail()
        status, body = worker.get("/metrics")
        assert status == 200, worker.log_tail()
        return body.decode()
    finally:
        worker.stop()


def test_every_dashboard_metric_is_exported_by_a_running_worker(worker_metrics: str) -> None:
    exported = exported_names(worker_metrics)
    queried = queried_names()
    assert len(queried) >= 15, sorted(queried)
    missing = {m: sorted(w) for m, w in queried.items()
               if m not in exported and m not in PROMETHEUS_SYNTHETIC}
    assert not missing, f"panels query metrics the worker does not export: {missing}"
    for runbook_name in ("batch_job_duration_seconds_bucket", "batch_job_triggers_total"):
        assert runbook_name in exported and runbook_name in queried
