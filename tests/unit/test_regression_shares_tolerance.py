"""Regression (issue 9): a baseline's shares had to sum to 1 within 1e-3 for the schema validator
(schemas/validation.py) but within 1e-6 for `Baseline.from_dict`, so a baseline off by 5e-4 was
accepted from the topic and then refused when parsed. One tolerance now, 1e-6, written once in
the baselines schema (`x-sharesTolerance`) and read by both."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import model_monitoring.tables.baseline as baseline_module
from model_monitoring.schemas.validation import SHARES_TOLERANCE, MessageRejected, Validators, load_schema
from model_monitoring.tables.baseline import Baseline, BaselineError

VALIDATORS = Validators()
BASELINE: dict[str, Any] = {
    "tenantId": None, "modelId": "risk-scoring", "modelVersion": "3", "task": "classification",
    "sampleSize": 20000,
    "features": {
        "amount": {"kind": "numeric", "edges": [10.0, 25.5, 40.0], "proportions": [0.2, 0.3, 0.3, 0.2],
                   "missing": 0.0},
        "industry": {"kind": "categorical", "categories": ["retail", "tech"], "proportions": [0.6, 0.35],
                     "other": 0.05, "missing": 0.0}},
    "performance": {"brier": 0.12, "mae": 0.25},
}


def off_by(delta: float, feature: str) -> dict[str, Any]:
    """The baseline with one feature's first share moved by `delta` (its sum is 1 + delta)."""
    doc = copy.deepcopy(BASELINE)
    doc["features"][feature]["proportions"][0] += delta
    return doc


def test_one_tolerance_of_1e6_read_from_the_schema() -> None:
    assert load_schema("baselines")["x-sharesTolerance"] == SHARES_TOLERANCE == 1e-6
    assert baseline_module.SHARES_TOLERANCE is SHARES_TOLERANCE


@pytest.mark.parametrize("feature", ["amount", "industry"])
@pytest.mark.parametrize("delta", [5e-4, -5e-4])
def test_off_by_5e4_is_rejected_by_the_validator_and_by_from_dict(feature: str, delta: float) -> None:
    doc = off_by(delta, feature)
    with pytest.raises(MessageRejected) as rejected:
        VALIDATORS.validate("baselines", doc)
    assert rejected.value.reason == "schema"
    assert rejected.value.detail.startswith(f"features.{feature}: proportions, other and missing must sum to 1")
    with pytest.raises(BaselineError) as refused:
        Baseline.from_dict(doc)
    assert refused.value.path == ("features", feature)


@pytest.mark.parametrize("feature", ["amount", "industry"])
@pytest.mark.parametrize("delta", [5e-7, -5e-7])
def test_off_by_5e7_passes_both(feature: str, delta: float) -> None:
    doc = off_by(delta, feature)
    assert VALIDATORS.validate("baselines", doc) is doc
    parsed = Baseline.from_dict(doc)
    assert parsed.to_dict()["features"] == doc["features"]
