"""Regression: a worker that folds an outcome before its prediction (its features topic behind
the outcomes) paired it however far apart the two were. The outcome-arrival view then held pairs
further apart than the join TTL: the sales test counted 699 and 702 pairs for 698 in CI, and 725
when every outcome came first, while label health missed the same outcomes as unmatched. Here
every outcome is folded before any prediction is produced, and the last week's run must match
the oracle exactly, as it does in the usual order (tests/integration/test_outcome_clock.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_monitoring.commands.broker import Broker
from tests.support.sales import END_MS, WEEK_MS, arrival_view, raw, run_sales

pytestmark = pytest.mark.integration


def test_outcomes_folded_before_their_predictions_give_the_same_arrival_view(broker: Broker, tmp_path: Path) -> None:
    sales = run_sales(broker, tmp_path, app_id="sales-outcomes-first", weeks_back=(0,), outcomes_first=True)
    _, outs = raw(sales["messages"])
    assert f'model_monitoring_ingest_events_total{{kind="early_outcomes"}} {float(len(outs))}' in sales["metrics"]
    (snap,) = [d for d in sales["runs"][0]["snapshot"] if d["segment"] is None]
    pairs, late = arrival_view(sales["messages"], END_MS - WEEK_MS, END_MS)
    p_arr, y_arr = np.array(pairs, dtype=np.float64).T
    brier = snap["performance"]["brier"]
    assert brier["windowBasis"] == "outcome" and brier["sampleSize"] == len(pairs)
    assert brier["value"] == pytest.approx(float(np.mean((p_arr - y_arr) ** 2)), abs=1e-12)
    assert late > 0 and snap["labels"]["expiredEarlyOutcomes"] == late
