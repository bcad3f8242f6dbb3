"""`count_groups` (one binning pass for many partials) equals `count_batch` per group, for any
mix of values: numbers, ±inf, NaN, None, strings, booleans, lists, absent keys."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from model_monitoring.commands.simulate import reference_records
from model_monitoring.tables.baseline_build import build_baseline
from model_monitoring.tables.histogram import count_batch, count_groups

BASELINE = build_baseline(reference_records("churn", n=1000, seed=4), model_id="churn",
                          model_version="3", tenant_id=None, task="classification")
NAMES = sorted(BASELINE.features)
VALUES = st.one_of(st.none(), st.floats(allow_nan=True), st.integers(-10**30, 10**30),
                   st.sampled_from(["retail", "tech", "web", "x", ""]), st.booleans(),
                   st.just([1]), st.just(math.inf))


@settings(max_examples=60, deadline=None)
@given(records=st.lists(st.tuples(st.integers(0, 5), st.dictionaries(st.sampled_from(NAMES), VALUES)),
                        min_size=0, max_size=60))
def test_count_groups_equals_count_batch_per_group(records: list) -> None:
    groups = [g for g, _ in records]
    feats = [f for _, f in records]
    got = count_groups(BASELINE, feats, groups, 6)
    expected = [count_batch(BASELINE, [f for g, f in records if g == i]) for i in range(6)]
    assert got == expected
