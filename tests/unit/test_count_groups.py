"""`count_groups` (one binning pass for many partials) equals `count_batch` per group, for any
mix of values: numbers, ±inf, NaN, None, strings, booleans, lists, absent keys."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from model_monitoring.commands.simulate import reference_records
from model_monitoring.tables.baseline_build import build_baseline
from model_monitoring.tables.histogram import count_batch, count_groups, feature_columns

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


def _clean_value(name: str) -> st.SearchStrategy[object]:
    """A value of the feature's own kind, or None: the columns `bin_codes` takes its one-lookup
    (categorical) or one-array (numeric) path for."""
    if BASELINE.features[name].bins.kind == "categorical":
        return st.one_of(st.none(), st.sampled_from(["retail", "tech", "web", "x", ""]))
    return st.one_of(st.none(), st.floats(allow_nan=False), st.integers(-10**6, 10**6))


CLEAN_RECORD = st.fixed_dictionaries({}, optional={name: _clean_value(name) for name in NAMES})


@settings(max_examples=80, deadline=None)
@given(records=st.lists(st.tuples(st.integers(0, 5), CLEAN_RECORD), min_size=0, max_size=60))
def test_count_groups_on_well_typed_columns_equals_count_batch(records: list) -> None:
    groups = [g for g, _ in records]
    feats = [f for _, f in records]
    got = count_groups(BASELINE, feats, groups, 6)
    assert got == [count_batch(BASELINE, [f for g, f in records if g == i]) for i in range(6)]


@settings(max_examples=80, deadline=None)
@given(records=st.lists(st.dictionaries(st.sampled_from(NAMES + ["extra"]), VALUES), max_size=30),
       names=st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
def test_feature_columns_are_each_names_values_with_none_where_absent(records: list, names: list) -> None:
    columns = feature_columns(records, names)
    assert [list(c) for c in columns] == [[r.get(n) for r in records] for n in names]
