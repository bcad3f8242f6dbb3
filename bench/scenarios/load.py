"""Input logs for the scenarios (the simulator's realistic traffic, sized by record count) and
ingesting one into a service."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from bench.scenarios.common import END_MS, ScenarioFailed, progress
from bench.scenarios.service import Service
from model_monitoring.commands.harness import WorkerProcess
from model_monitoring.commands.simulate import Message, Scenario, StreamConfig, generate
from tests.support.baselines import build_baselines

TENANTS = ("acme", "globex", "initech")
MODELS = ("risk-scoring", "churn")


def baselines() -> dict[tuple[str, str], Any]:
    """The `*` baselines of both models, version 3 (the tests' reference samples)."""
    return build_baselines()


def stream(records: int, seed: int, scenario: Scenario | None = None,
           tenants: tuple[str, ...] = TENANTS) -> list[Message]:
    """About `records` input records (predictions and ~80% of their outcomes) over 14 days
    ending at END_MS, in log order."""
    scenario = scenario or Scenario()
    per_key = max(50, round(records / (len(tenants) * len(MODELS) * (1 + scenario.outcome_rate))))
    cfg = StreamConfig(tenants=tenants, models=MODELS, events_per_key=per_key, days=14,
                       end_ms=END_MS, seed=seed, scenario=scenario)
    return list(generate(cfg))


def ingest_start(svc: Service, refs: Mapping[tuple[str, str], Any]) -> WorkerProcess:
    """The baselines published, worker 0 started and holding them."""
    svc.publish_baselines(refs)
    worker = svc.workers.get(0) or svc.start_worker(0)
    svc.wait_baselines(worker, len(refs))
    return worker


def ingest(svc: Service, messages: list[Message], refs: Mapping[tuple[str, str], Any],
           timeout: float = 300) -> None:
    """Baselines first, one worker, the whole log, and wait until the group has committed all."""
    worker = ingest_start(svc, refs)
    started = time.monotonic()
    svc.produce(messages)
    if not svc.wait_consumed(timeout):
        raise ScenarioFailed(f"input not consumed within {timeout}s:\n{worker.log_tail()}")
    progress(f"  ingested {len(messages)} messages in {time.monotonic() - started:.1f}s")
