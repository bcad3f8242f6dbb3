"""An evaluator (`agents/snapshot.py` `Evaluator`) on plain dicts for tables and a recorder for
its sends and flushes, its baselines read through the service's `BaselineCache` (each read of
the table counted), and a drifting week's part to evaluate."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

from model_monitoring.commands.simulate import Scenario, StreamConfig, generate, reference_records
from model_monitoring.schemas.validation import Validators
from model_monitoring.streams.metrics import Metrics
from model_monitoring.streams.settings import load_settings
from model_monitoring.tables.baseline_build import build_baseline
from model_monitoring.tables.baseline_lookup import BaselineCache
from model_monitoring.tables.histogram import count_batch
from model_monitoring.tables.keys import BaselineKey
from model_monitoring.tables.partial import PartialState

END = 1_795_046_400_000


class Recorder:
    """Every send and flush, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def topic(self, name: str) -> Any:
        async def send(key: bytes, value: bytes) -> None:
            self.calls.append((name, orjson.loads(value)))
        return SimpleNamespace(send=send)

    async def flush(self) -> None:
        self.calls.append(("flush", None))

    def sent(self, name: str) -> list[dict[str, Any]]:
        return [doc for topic, doc in self.calls if topic == name]


class CountedTable(dict[bytes, bytes]):
    """The baselines table: a dict whose `get`s are counted (each copies a stored baseline)."""

    reads = 0

    def get(self, key: bytes, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)


def evaluator_monitor() -> Any:
    baseline = build_baseline(reference_records("churn", n=2000, seed=11), model_id="churn",
                              model_version="3", tenant_id=None, task="classification")
    rec = Recorder()
    stored = CountedTable({BaselineKey(None, "churn", "3").encode(): orjson.dumps(baseline.to_dict())})
    topics = SimpleNamespace(**{n: rec.topic(n) for n in ("snapshot", "drift", "degraded", "resolved",
                                                          "recovered", "runs")})
    return SimpleNamespace(
        settings=load_settings({"MODEL_MONITORING_JWT_SECRET": "x" * 32}), topics=topics,
        tables=SimpleNamespace(evaluations={}, incidents={}), validators=Validators(), metrics=Metrics(),
        baselines=BaselineCache(stored), stored_baselines=stored,
        app=SimpleNamespace(producer=rec), recorder=rec, baseline=baseline)


def part(monitor: Any) -> dict[tuple[str, str], PartialState]:
    """A drifting week of acme:churn (an unseen category for 40%), as one partition's part."""
    messages = generate(StreamConfig(tenants=("acme",), models=("churn",), events_per_key=1500,
                                     end_ms=END, seed=3, scenario=Scenario(unseen_category=("acme:churn",))))
    features = [orjson.loads(m.value)["features"] for m in messages if m.kind == "features"
                and orjson.loads(m.value)["timestamp"] >= "2026-11-12"]
    state = PartialState().add(count_batch(monitor.baseline, features))
    return {("3", "emea"): state}
