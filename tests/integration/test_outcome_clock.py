"""The outcome clock on a real broker and worker, with sales-cycle label lags (`simulate`'s
`sales` scenario: outcomes 2–120 days after their predictions, the model wrong on the predictions
made from week 12, its scores moving in week 20). The last week's run:

- the prediction-window view says `insufficient_data` (a week's deals have hardly closed);
- the outcome-arrival view raises the degradation, with the exact Brier of the outcomes that
  arrived in the window;
- prediction drift fires in the week the score distribution moves, and not the week before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from model_monitoring.commands.broker import Broker
from model_monitoring.schemas.validation import Validators
from tests.support.sales import END_MS, WEEK_MS, arrival_view, run_sales

pytestmark = pytest.mark.integration

VALIDATORS = Validators()


@pytest.fixture(scope="module")
def sales(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield run_sales(broker, tmp_path_factory.mktemp("sales"), app_id="sales-mm")


def test_the_outcome_view_catches_what_the_prediction_view_cannot_see_yet(sales: dict[str, Any]) -> None:
    run = sales["runs"][0]
    for kind, docs in run.items():
        for doc in docs:
            VALIDATORS.validate(kind, doc)
    (snap,) = [d for d in run["snapshot"] if d["segment"] is None]
    assert snap["windowBasis"] == "outcome"
    assert snap["performanceViews"]["prediction"]["brier"]["status"] == "insufficient_data"
    brier = snap["performance"]["brier"]
    assert brier["status"] == "degraded" and brier["windowBasis"] == "outcome"
    # the exact Brier of the outcomes that arrived in the window, whenever their predictions were made
    pairs, late = arrival_view(sales["messages"], END_MS - WEEK_MS, END_MS)
    p_arr, y_arr = np.array(pairs, dtype=np.float64).T
    assert brier["sampleSize"] == len(pairs)
    assert brier["value"] == pytest.approx(float(np.mean((p_arr - y_arr) ** 2)), abs=1e-12)
    (degraded,) = [e for e in run["degraded"] if e["metric"] == "brier"]
    assert degraded["windowBasis"] == "outcome" and degraded["value"] == brier["value"]
    # calibration and label health are reported beside it
    calibration = snap["calibration"]
    terms = (calibration["reliability"] - calibration["resolution"] + calibration["uncertainty"]
             + calibration["withinBinVariance"] - calibration["withinBinCovariance"])
    assert abs(terms - brier["value"]) <= 1e-12
    labels = snap["labels"]
    assert labels["coverage"] < 0.05 and labels["lagP50Hours"] > 14 * 24
    assert late > 0 and labels["expiredEarlyOutcomes"] == late  # outcomes later than the TTL: unmatched, not lost
    assert snap["expectedBrier"] is not None and snap["expectedBrier"] < brier["value"]
    # label health in /metrics too, per model version
    version = snap["modelVersion"]
    for name in ("coverage", "lag_p50_hours", "lag_p90_hours", "unmatched_outcomes", "expected_brier"):
        assert (f'model_monitoring_label_health{{figure="{name}",model="deal-scoring",tenant="{snap["tenantId"]}",'
                f'version="{version}"}}') in sales["metrics"], name
    assert 'model_monitoring_metric_value{metric="ece",model="deal-scoring"' in sales["metrics"]


def test_prediction_drift_fires_in_the_week_the_scores_move(sales: dict[str, Any]) -> None:
    before, moved = sales["runs"][1], sales["runs"][0]
    (snap_before,) = [d for d in before["snapshot"] if d["segment"] is None]
    assert snap_before["prediction"]["status"] == "ok"
    assert not [e for e in before["drift"] if e.get("kind") == "prediction"]
    (event,) = [e for e in moved["drift"] if e.get("kind") == "prediction"]
    assert event["feature"] == "prediction" and event["incidentStatus"] == "opened"
    assert all(e["kind"] == "feature" for e in moved["drift"] if e is not event)
