"""The weekly run's feature checks in one numpy pass per feature baseline (`FeatureVerdicts`,
`feature_verdicts`) give each check exactly what it gets alone: the same floats to the bit, the
same statuses, so a batch of keys publishes what one key at a time would."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from model_monitoring.commands.simulate import reference_records
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.baseline_build import build_baseline
from model_monitoring.tables.histogram import FeatureHistogram
from model_monitoring.tables.partial import PartialState
from model_monitoring.tables.psi import FeatureVerdicts, evaluate_feature, feature_verdicts
from model_monitoring.tables.run_evaluation import evaluate_key, want_verdicts
from model_monitoring.tables.thresholds import Thresholds

END = 1_795_046_400_000
THRESHOLDS = Thresholds(min_samples=100)


@cache
def baseline() -> Baseline:
    return build_baseline(reference_records("churn", n=2000, seed=11), model_id="churn",
                          model_version="3", tenant_id=None, task="classification")


def rows_for(n_bins: int) -> st.SearchStrategy[list[list[int]]]:
    """Count rows of every kind: empty, sparse (under min_samples), ample, drifted to one bin."""
    row = st.one_of(
        st.just([0] * n_bins),
        st.lists(st.integers(0, 12), min_size=n_bins, max_size=n_bins),
        st.lists(st.integers(0, 2000), min_size=n_bins, max_size=n_bins),
        st.tuples(st.integers(0, n_bins - 1), st.integers(100, 5000)).map(
            lambda iv: [iv[1] if i == iv[0] else 1 for i in range(n_bins)]),
        st.tuples(st.integers(0, n_bins - 1), st.integers(100, 5000)).map(  # all in one bin
            lambda iv: [iv[1] if i == iv[0] else 0 for i in range(n_bins)]))
    return st.lists(row, min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_batch_of_rows_gets_what_each_row_gets_alone(data: st.DataObject) -> None:
    base = baseline()
    name = data.draw(st.sampled_from(sorted(base.features)))
    feature = base.features[name]
    rows = data.draw(rows_for(feature.bins.n_bins))
    together = feature_verdicts(feature, np.array(rows), base.sample_size, THRESHOLDS, "churn")
    alone = [evaluate_feature(feature, np.array(r), base.sample_size, THRESHOLDS, "churn") for r in rows]
    assert together == alone
    assert {v.status for v in together} <= {"ok", "drift", "insufficient_data"}


def histogram(base: Baseline, draw: st.DrawFn) -> FeatureHistogram:
    counts = {}
    for name, feature in sorted(base.features.items()):
        if draw(st.booleans()):
            counts[name] = tuple(draw(rows_for(feature.bins.n_bins))[0])
    n = max((sum(c) for c in counts.values()), default=0)
    return FeatureHistogram(counts=counts, type_mismatch={}, n=n, fingerprint=base.fingerprint())


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_keys_evaluated_with_verdicts_worked_out_ahead_publish_the_same(data: st.DataObject) -> None:
    base = baseline()
    keys: dict[str, Any] = {}
    for tenant in range(data.draw(st.integers(1, 5))):
        keys[f"t{tenant}:churn"] = {("3", None): PartialState(histogram=histogram(base, data.draw)),
                                    ("3", "emea"): PartialState(histogram=histogram(base, data.draw))}
    common: dict[str, Any] = dict(baseline_for=lambda t, m, v: base, thresholds=THRESHOLDS,
                                  job_run_id="run-1", window_start_ms=END - 7 * 86_400_000,
                                  window_end_ms=END, detected_at="2026-11-22T00:00:00.000Z")
    verdicts = FeatureVerdicts(THRESHOLDS)
    for key, merged in keys.items():
        want_verdicts(key, merged, common["baseline_for"], verdicts)
    verdicts.compute()
    for key, merged in keys.items():
        ahead = evaluate_key(key, merged, verdicts=verdicts, **common)
        alone = evaluate_key(key, merged, **common)
        assert ahead.events == alone.events and ahead.counts == alone.counts
    # every feature check of every snapshot was answered from the one pass
    assert verdicts.answered == len(keys) * 2 * len(base.features)


def test_regression_a_row_batched_with_rows_sparse_elsewhere_gets_its_own_bound() -> None:
    """Found by the property below in CI (hypothesis): one row with every bin but one at 1 and
    one with everything in the last bin, checked together, gave the first a psiLower, pValue and
    gate one ulp off its own (3.878879196970609 against 3.87887919697061). The exact no-drift
    moments were summed over the columns sparse in *any* row of the batch, so a row's terms sat
    at other positions than alone, and numpy's pairwise summation grouped them otherwise."""
    base = baseline()
    feature = base.features["age_days"]
    rows = [[1, 1, 1, 1, 1, 202, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100]]
    together = feature_verdicts(feature, np.array(rows), base.sample_size, THRESHOLDS, "churn")
    assert together == [evaluate_feature(feature, np.array(r), base.sample_size, THRESHOLDS, "churn")
                        for r in rows]
