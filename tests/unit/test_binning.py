"""Frozen bins: labels, the value rules, vectorised counting against a per-value oracle, and the
quantile edges (ties, point masses, constants, infinities)."""

from __future__ import annotations

import bisect
import math
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_monitoring.tables.binning import MISSING, OTHER, FeatureBins, category_list, numeric_edges
from model_monitoring.tables.psi import psi

AMOUNT = FeatureBins("amount", "numeric", edges=(10.0, 25.5, 40.0))
INDUSTRY = FeatureBins("industry", "categorical", categories=("retail", "tech"))


def reference_numeric_bin(bins: FeatureBins, value: object) -> tuple[int, bool]:
    """(bin index, mismatch) of one value, written independently of the vectorised code."""
    if value is None:
        return bins.n_bins - 1, False
    if type(value) not in (int, float):
        return bins.n_bins - 1, True
    if math.isnan(value):
        return bins.n_bins - 1, False
    return bisect.bisect_right(bins.edges, value), False


def reference_category_bin(bins: FeatureBins, value: object) -> tuple[int, bool]:
    if value is None or (type(value) is float and math.isnan(value)):
        return bins.n_bins - 1, False
    if type(value) is bool:
        value = "true" if value else "false"
    if type(value) is not str:
        return bins.n_bins - 1, True
    return (bins.categories.index(value) if value in bins.categories else len(bins.categories)), False


def reference_counts(bins: FeatureBins, values: list[object]) -> tuple[list[int], int]:
    rule = reference_numeric_bin if bins.kind == "numeric" else reference_category_bin
    counts, mismatch = [0] * bins.n_bins, 0
    for value in values:
        index, bad = rule(bins, value)
        counts[index] += 1
        mismatch += bad
    return counts, mismatch


def test_labels_and_bin_counts_follow_the_contract() -> None:
    assert AMOUNT.n_bins == 5
    assert AMOUNT.labels() == ["[-inf, 10.0)", "[10.0, 25.5)", "[25.5, 40.0)", "[40.0, inf)", MISSING]
    assert INDUSTRY.n_bins == 4
    assert INDUSTRY.labels() == ["retail", "tech", OTHER, MISSING]
    assert FeatureBins("constant", "numeric").labels() == ["[-inf, inf)", MISSING]


def test_a_value_on_an_edge_belongs_to_the_bin_it_opens() -> None:
    counts, mismatch = AMOUNT.bin_values([9.999, 10.0, 10, 25.5, 39.99, 40.0, 40])
    assert counts.tolist() == [1, 2, 2, 2, 0]
    assert mismatch == 0
    assert counts.dtype == np.int64


def test_infinities_go_to_the_outer_bins_and_nan_none_to_missing() -> None:
    counts, mismatch = AMOUNT.bin_values([-math.inf, math.inf, math.nan, None, 10**400, -(10**400)])
    assert counts.tolist() == [2, 0, 0, 2, 2]
    assert mismatch == 0


def test_a_wrong_type_for_a_numeric_feature_is_missing_and_a_mismatch() -> None:
    counts, mismatch = AMOUNT.bin_values(["12", True, False, [1], {"a": 1}, 12.0])
    assert counts.tolist() == [0, 1, 0, 0, 5]
    assert mismatch == 5  # bool is not a number here


def test_categorical_values_booleans_unseen_and_mismatches() -> None:
    bins = FeatureBins("flag", "categorical", categories=("true", "false"))
    assert bins.bin_values([True, False, True, "true"])[0].tolist() == [3, 1, 0, 0]
    counts, mismatch = INDUSTRY.bin_values(["retail", "crypto", "Retail", None, math.nan, 3, 2.5, ["x"], "tech"])
    assert counts.tolist() == [1, 1, 2, 5]  # unseen strings (case matters) go to other
    assert mismatch == 3  # numbers and lists; NaN is missing, not a mismatch


def test_empty_and_all_missing_batches() -> None:
    for bins in (AMOUNT, INDUSTRY):
        counts, mismatch = bins.bin_values([])
        assert counts.tolist() == [0] * bins.n_bins and mismatch == 0
        counts, mismatch = bins.bin_values([None, None, math.nan])
        assert counts.tolist() == [0] * (bins.n_bins - 1) + [3] and mismatch == 0


def test_numpy_input_and_numpy_scalars_count_like_python_numbers() -> None:
    array = np.array([1.0, 10.0, np.nan, np.inf])
    assert AMOUNT.bin_values(array)[0].tolist() == [1, 1, 0, 1, 1]
    mixed = [np.float32(30.0), np.int64(50), np.bool_(True), None]
    counts, mismatch = AMOUNT.bin_values(mixed)
    assert counts.tolist() == [0, 0, 1, 1, 2] and mismatch == 1


_VALUE = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([10.0, 25.5, 40.0, 10, 40]),
    st.booleans(),
    st.sampled_from(["retail", "tech", "other", "crypto", ""]),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_VALUE, max_size=60))
def test_vectorised_counts_equal_the_per_value_oracle(values: list[object]) -> None:
    for bins in (AMOUNT, INDUSTRY, FeatureBins("none", "numeric"), FeatureBins("empty", "categorical")):
        counts, mismatch = bins.bin_values(values)
        assert (counts.tolist(), mismatch) == reference_counts(bins, values)
        assert int(counts.sum()) == len(values)


def test_numeric_edges_of_a_continuous_feature_are_its_deciles() -> None:
    sample = np.random.default_rng(1).standard_normal(20_000)
    edges = numeric_edges(sample)
    assert len(edges) == 9
    assert all(e in set(sample.tolist()) for e in edges)  # "inverted_cdf": observed values
    counts, _ = FeatureBins("x", "numeric", edges=edges).bin_values(sample)
    np.testing.assert_allclose(counts[:-1] / sample.size, 0.1, atol=2 / sample.size)
    assert numeric_edges(sample, n_bins=4) == tuple(np.quantile(sample, [0.25, 0.5, 0.75], method="inverted_cdf"))


def test_ninety_percent_zeros_keep_the_zeros_in_a_bin_of_their_own() -> None:
    sample = np.r_[np.zeros(9_000), np.arange(1.0, 1_001.0)]
    edges = numeric_edges(sample)
    assert edges == (1.0,)
    bins = FeatureBins("zeros", "numeric", edges=edges)
    expected = np.r_[bins.bin_values(sample)[0][:-1] / sample.size, 0.0]
    assert expected.tolist() == [0.9, 0.1, 0.0]
    for current in ([0.0] * 500, [5.0] * 500, [None] * 500):
        value, terms = psi(expected, bins.bin_values(current)[0])
        assert math.isfinite(value) and np.all(np.isfinite(terms))


def test_eighty_percent_zeros_split_the_rest_by_quantiles() -> None:
    sample = np.r_[np.zeros(8_000), np.arange(1.0, 2_001.0)]
    assert numeric_edges(sample) == (1.0, 1_000.0)


def test_a_constant_feature_has_one_value_bin_and_a_finite_psi() -> None:
    assert numeric_edges(np.full(1_000, 3.0)) == ()
    bins = FeatureBins("constant", "numeric", edges=())
    assert bins.n_bins == 2
    value, _ = psi(np.array([1.0, 0.0]), bins.bin_values([3.0] * 90 + [None] * 10)[0])
    assert math.isfinite(value) and value > 0
    assert psi(np.array([1.0, 0.0]), bins.bin_values([7.0] * 100)[0])[0] == 0.0


def test_infinities_in_the_reference_do_not_make_edges() -> None:
    sample = np.r_[np.arange(10.0), np.inf, -np.inf, np.nan]
    edges = numeric_edges(sample)
    assert edges == (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)  # deciles of the finite values
    counts, _ = FeatureBins("x", "numeric", edges=edges).bin_values(sample)
    assert counts.tolist() == [1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1]  # -inf in bin 0, +inf in the last
    assert numeric_edges(np.array([np.inf, -np.inf, np.nan])) == ()
    assert numeric_edges(np.array([])) == ()
    # -inf fills bin 0, so an edge at the finite minimum leaves no empty bin and stays.
    assert numeric_edges(np.r_[-np.inf, np.zeros(10)]) == (0.0,)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.integers(-3, 3).map(float), st.floats(-1e6, 1e6), st.just(math.inf), st.just(math.nan)), min_size=1, max_size=80),
    st.integers(1, 12),
)
def test_edges_are_strictly_increasing_finite_and_leave_no_empty_bin(values: list[float], n_bins: int) -> None:
    edges = numeric_edges(np.array(values), n_bins)
    assert all(math.isfinite(e) for e in edges)
    assert all(a < b for a, b in pairwise(edges))
    assert len(edges) <= n_bins - 1
    present = [v for v in values if not math.isnan(v)]
    if present:
        counts, _ = FeatureBins("x", "numeric", edges=edges).bin_values(present)
        assert np.all(counts[:-1] > 0)


def test_category_list_keeps_the_most_frequent_first() -> None:
    sample = ["b"] * 3 + ["a"] * 3 + ["c"] * 5 + ["d"]
    assert category_list(sample, 10) == ("c", "a", "b", "d")
    assert category_list(sample, 2) == ("c", "a")
    assert category_list(sample, 0) == ()
    with pytest.raises(ValueError):
        category_list(sample, -1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "numeric", "edges": (1.0, 1.0)},
        {"kind": "numeric", "edges": (2.0, 1.0)},
        {"kind": "numeric", "edges": (math.inf,)},
        {"kind": "numeric", "categories": ("a",)},
        {"kind": "categorical", "categories": ("a", "a")},
        {"kind": "categorical", "edges": (1.0,)},
        {"kind": "ordinal"},
    ],
)
def test_inconsistent_bins_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FeatureBins("x", **kwargs)  # type: ignore[arg-type]
