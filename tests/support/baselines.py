"""The reference baselines of the simulated models, their `ml.model.baselines` messages, and a
worker's environment provisioned with them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import orjson

from model_monitoring.commands.broker import Broker
from model_monitoring.commands.harness import produce, service_env
from model_monitoring.commands.simulate import reference_records
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import Settings, load_settings
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.baseline_build import build_baseline

MODELS = ("risk-scoring", "churn")


def build_baselines(version: str = "3") -> dict[tuple[str, str], Baseline]:
    """(model, version) -> the baseline of a 5,000-record reference sample of each model."""
    return {(m, version): build_baseline(reference_records(m, n=5000, seed=11), model_id=m,
                                         model_version=version, tenant_id=None,
                                         task="classification")
            for m in MODELS}


def two_feature_baseline(n: int) -> Baseline:
    """Model `m` version 1: a normal `x` and a categorical `c` of `a`/`b`, from `n` records
    drawn with seed 0 (the unit tests' small baseline)."""
    rng = np.random.default_rng(0)
    recs = [{"predictionId": f"r{i}", "tenantId": "*", "modelId": "m", "modelVersion": "1",
             "timestamp": "2026-10-01T00:00:00Z", "prediction": 0.5,
             "features": {"x": float(rng.normal()), "c": str(rng.choice(["a", "b"]))}}
            for i in range(n)]
    return build_baseline(recs, model_id="m", model_version="1", tenant_id=None, task="classification")


def baseline_message(baseline: Baseline) -> tuple[bytes, bytes]:
    """(key, value) of the baseline's message on the baselines topic."""
    return baseline.key().encode(), orjson.dumps(baseline.to_dict())


def provisioned(broker: Broker, data_dir: Path, name: str, *, partitions: int = 4,
                extra: Mapping[str, str] | None = None,
                baselines: Mapping[tuple[str, str], Baseline] | None = None,
                ) -> tuple[dict[str, str], Settings, Mapping[tuple[str, str], Baseline]]:
    """A worker's environment on topics of its own (`<name>.…`, app id `<name>-mm`, the crontab
    off), the topics created and the baselines (by default every simulated model's) published:
    (env, its settings, the baselines)."""
    env = service_env(broker, data_dir, app_id=f"{name}-mm", topic_prefix=f"{name}.",
                      extra={"MODEL_MONITORING_PARTITIONS": str(partitions),
                             "MODEL_MONITORING_CRON_ENABLED": "false", **(extra or {})})
    s = load_settings(env)
    asyncio.run(ensure_topics(s))
    baselines = build_baselines() if baselines is None else baselines
    asyncio.run(produce(broker.bootstrap, [(s.baselines_topic, *baseline_message(b)) for b in baselines.values()]))
    return env, s, baselines
