"""The Grafana dashboards on a real Prometheus: Debian's `prometheus` scrapes a worker (with the
project's deploy/prometheus.yml, its targets rewritten) while it ingests traffic and does a
weekly run; then every query of both dashboards, sent as Grafana sends it, returns a series.
That is what a user sees on opening them. Skipped without the binary, except under CI, where
`.ci/run` installs it and its absence fails."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import WorkerProcess, produce, read_topic
from model_monitoring.commands.simulate import Scenario, StreamConfig, generate
from model_monitoring.schemas.timestamps import format_timestamp
from tests.support.baselines import provisioned
from tests.support.dashboards import (
    DASHBOARD_FILES,
    Query,
    grafana_queries,
    grafana_variables,
    load_dashboard,
    substitute,
)
from tests.support.prometheus import PrometheusServer, prometheus_binary
from tests.support.waiting import feed, wait_for_baselines, wait_until

pytestmark = pytest.mark.integration

SCRAPE_S = 1
END_MS = 1_795_046_400_000  # a midnight UTC: the run's window is the 7 whole days before it
# a small week of realistic traffic: one drift, one accuracy drop, duplicates, early outcomes
# and a few malformed messages (dead letters are a panel too)
SCENARIO = Scenario(numeric_shift=("acme:risk-scoring",), accuracy_drop=("acme:churn",),
                    duplicate_rate=0.01, early_outcome_rate=0.03, malformed_rate=0.005)


def queries() -> list[tuple[Query, dict[str, str]]]:
    """Every query of both dashboards, with the values Grafana gives its variables."""
    out = []
    for name in DASHBOARD_FILES:
        board = load_dashboard(name)
        variables = grafana_variables(board, SCRAPE_S)
        out.extend((q, variables) for q in grafana_queries(board))
    return out


QUERIES = queries()


@dataclass
class Scraped:
    prometheus: PrometheusServer
    started: float  # unix time: the worker was up and scraped from here on
    ended: float    # unix time: the run completed, and Prometheus scraped that
    completion: dict[str, Any]  # the run's workflow.job.completed
    malformed: int  # malformed messages in the traffic, each dead-lettered
    alerts: int  # the run's drift and degraded events that opened or escalated an incident


@pytest.fixture(scope="session")  # the session's scope: it is decided before a broker starts
def prometheus_bin() -> str:
    found = prometheus_binary()
    if found is None:
        reason = "no `prometheus` on PATH (Debian: apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"under CI, and {reason}: .ci/run installs it", pytrace=False)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def scraped(prometheus_bin: str, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """A worker scraped by Prometheus from its start through traffic and one weekly run."""
    tmp = tmp_path_factory.mktemp("prometheus")
    env, s, _ = provisioned(broker, tmp / "data", "prom", partitions=2)
    messages = list(generate(StreamConfig(events_per_key=800, days=14, end_ms=END_MS, seed=5,
                                          scenario=SCENARIO)))
    worker = WorkerProcess(env, tmp / "worker.log").start()
    prometheus = PrometheusServer(prometheus_bin, tmp, f"127.0.0.1:{worker.web_port}", SCRAPE_S)
    try:
        worker.wait_ready()
        prometheus.start()
        wait_until(lambda: prometheus.worker_target_health() == "up", 30, every=0.5,
                   failure=lambda: f"worker target: {prometheus.worker_target_health()}\n{prometheus.log_tail()}")
        started = time.time()
        wait_for_baselines(worker, s, 2)
        feed(broker.bootstrap, s, worker, messages, 120)
        trigger = {"job": "model-monitoring", "jobRunId": "prom-1",
                   "metadata": {"windowEnd": format_timestamp(END_MS)}}
        asyncio.run(produce(broker.bootstrap, [(s.trigger_topic, b"prom-1", orjson.dumps(trigger))]))
        wait_until(lambda: bool(completion(broker, s.completed_topic, "prom-1")), 90, failure=worker.log_tail)
        # Prometheus has a sample with the run counted, and a few more scrapes after it
        wait_until(lambda: runs_scraped(prometheus, time.time() - 3 * SCRAPE_S), 30, every=0.5,
                   failure=lambda: f"no scrape with the run counted:\n{prometheus.log_tail()}")
        alerts = [d for topic in (s.drift_topic, s.degraded_topic)
                  for d in (orjson.loads(r.value) for r in asyncio.run(read_topic(broker.bootstrap, topic, timeout=5)))
                  if d["jobRunId"] == "prom-1" and d["incidentStatus"] in ("opened", "escalated")]
        yield Scraped(prometheus, started, time.time(), completion(broker, s.completed_topic, "prom-1"),
                      sum(1 for m in messages if m.key.startswith(b"bad-")), len(alerts))
    finally:
        prometheus.stop()
        worker.stop()


def completion(broker: Broker, topic: str, job_run_id: str) -> dict[str, Any]:
    """The run's workflow.job.completed, or {} while there is none."""
    docs = [orjson.loads(r.value) for r in asyncio.run(read_topic(broker.bootstrap, topic, timeout=5))]
    return next((d for d in docs if d["jobRunId"] == job_run_id), {})


def runs_scraped(prometheus: PrometheusServer, at: float) -> bool:
    """At `at`, Prometheus already held a sample counting the completed run."""
    return bool(prometheus.query('model_monitoring_runs_total{status="completed"} >= 1', at))


def series(scraped: Scraped, query: Query, variables: dict[str, str]) -> list[dict[str, Any]]:
    """What Grafana gets for the query when the dashboard is opened at the end of the run: an
    instant query at that time, a range query over the time the worker was scraped (one step a
    scrape), or a variable's label values (as `{"label": value}`)."""
    prom, expr = scraped.prometheus, substitute(query.expr, variables)
    if query.kind == "instant":
        return prom.query(expr, scraped.ended)
    if query.kind == "range":
        return prom.query_range(expr, scraped.started, scraped.ended, SCRAPE_S)
    values = prom.api(f"label/{query.label}/values", **{"match[]": expr, "start": scraped.started,
                                                        "end": scraped.ended})
    return [{"label": v} for v in values]


def shows_a_number(result: list[dict[str, Any]]) -> bool:
    """Some sample of some series is a number: a panel of NaN only reads "No data"."""
    samples = [sample for one in result for sample in one.get("values", [one.get("value")])]
    return any(sample and not math.isnan(float(sample[1])) for sample in samples)


def test_every_query_of_both_dashboards_is_found() -> None:
    """The extraction sees panels in rows too, and both variables."""
    assert len(QUERIES) >= 39, [q.where for q, _ in QUERIES]


@pytest.mark.parametrize(("query", "variables"), QUERIES, ids=[q.where for q, _ in QUERIES])
def test_dashboard_query_returns_a_series(scraped: Scraped, query: Query, variables: dict[str, str]) -> None:
    result = series(scraped, query, variables)
    expr = substitute(query.expr, variables)
    assert result, f"no series for {query.kind} {expr!r}"
    if query.kind != "label_values":
        assert shows_a_number(result), f"only NaN for {query.kind} {expr!r}: {result}"


def stat(scraped: Scraped, where: str) -> float:
    """The number a stat panel shows (its one instant series)."""
    query, variables = next((q, v) for q, v in QUERIES if q.where == where)
    [one] = series(scraped, query, variables)
    return float(one["value"][1])


def test_the_stats_count_the_run(scraped: Scraped) -> None:
    """The run, its trigger, its alerts and the dead letters are each counted, and the duration
    is the one the run published. increase() over a range longer than the data extrapolates by
    up to a scrape interval: over the test's ~30 s of samples that reads ~3% high, hence rel=0.1
    (before the worker exported these series at 0 from its start, each appeared at its first
    count, which increase() does not see: the stats read 0 runs, 0 triggers, 0 of 11 alerts,
    about 34 of 43 dead letters, and no last run duration)."""
    done = scraped.completion
    assert stat(scraped, "mm-batch-jobs / Last run duration / A") == pytest.approx(done["durationMs"] / 1000)
    assert stat(scraped, "mm-batch-jobs / Runs completed / A") == pytest.approx(1, rel=0.1)
    assert stat(scraped, "mm-batch-jobs / Runs failed / A") == 0
    assert stat(scraped, "mm-batch-jobs / Triggers / A") == pytest.approx(1, rel=0.1)
    # alerts: the events that opened (or escalated) an incident, one per feature or metric in
    # breach, fewer than the checks in breach (segments are listed inside the overall events)
    assert 0 < scraped.alerts < done["driftDetected"] + done["performanceDegraded"] and scraped.malformed > 0
    assert stat(scraped, "mm-model-monitoring / Alerts published (range) / A") == pytest.approx(scraped.alerts, rel=0.1)
    assert stat(scraped, "mm-model-monitoring / Dead-lettered (range) / A") == pytest.approx(scraped.malformed, rel=0.1)
