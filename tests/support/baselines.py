"""The reference baselines of the simulated models, and their `ml.model.baselines` messages."""

from __future__ import annotations

import orjson

from model_monitoring.commands.simulate import reference_records
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.baseline_build import build_baseline

MODELS = ("risk-scoring", "churn")


def build_baselines(version: str = "3") -> dict[tuple[str, str], Baseline]:
    """(model, version) -> the baseline of a 5,000-record reference sample of each model."""
    return {(m, version): build_baseline(reference_records(m, n=5000, seed=11), model_id=m,
                                         model_version=version, tenant_id=None,
                                         task="classification")
            for m in MODELS}


def baseline_message(baseline: Baseline) -> tuple[bytes, bytes]:
    """(key, value) of the baseline's message on the baselines topic."""
    return baseline.key().encode(), orjson.dumps(baseline.to_dict())
