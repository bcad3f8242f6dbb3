"""The algebra of the state classes (hypothesis): merge is associative and commutative, counting
parts and merging equals counting the whole, PSI >= 0, and every encoding round-trips via orjson."""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import pairwise

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.baseline_build import build_baseline
from model_monitoring.tables.error_sums import ErrorSums, PerformanceSums, exact_units, exact_units_sum
from model_monitoring.tables.histogram import FeatureHistogram, count_batch
from model_monitoring.tables.psi import psi
from tests.support.strategies import performance_sums

SETTINGS = settings(max_examples=150, deadline=None)
SLOW_SETTINGS = settings(max_examples=50, deadline=None)  # each example builds a baseline

FINGERPRINT = "f" * 16
SHAPE = {"amount": 5, "industry": 4}


@st.composite
def histograms(draw: st.DrawFn) -> FeatureHistogram:
    counts = {name: tuple(draw(st.lists(st.integers(0, 10**6), min_size=k, max_size=k))) for name, k in SHAPE.items()}
    names = draw(st.sets(st.sampled_from(sorted(SHAPE))))
    return FeatureHistogram(
        counts={n: counts[n] for n in sorted(names)},
        type_mismatch={n: draw(st.integers(0, 100)) for n in sorted(names)},
        n=draw(st.integers(0, 10**6)),
        fingerprint=draw(st.sampled_from(["", FINGERPRINT])),
    )


# Errors from every corner of the double range: exact sums must not care.
ERRORS = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e150, max_value=1e150) | st.floats(
    min_value=0.0, max_value=1e-300
)


@st.composite
def error_sums(draw: st.DrawFn) -> ErrorSums:
    return ErrorSums().update_many(np.array(draw(st.lists(ERRORS, max_size=20)), dtype=np.float64))




@SETTINGS
@given(histograms(), histograms(), histograms())
def test_histogram_merge_is_associative_and_commutative(a: FeatureHistogram, b: FeatureHistogram, c: FeatureHistogram) -> None:
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(FeatureHistogram.empty()) == a == FeatureHistogram.empty(a.fingerprint).merge(a)
    assert a.merge(b).n == a.n + b.n


def test_histograms_of_different_bins_do_not_merge() -> None:
    a, b = FeatureHistogram.empty("a" * 16), FeatureHistogram.empty("b" * 16)
    with pytest.raises(ValueError):
        a.merge(b)
    with pytest.raises(ValueError):
        FeatureHistogram({"x": (1, 2)}).merge(FeatureHistogram({"x": (1, 2, 3)}))


def test_names_only_counts_are_the_identity_of_a_feature() -> None:
    names_only = FeatureHistogram({"x": ()}, {}, 3, "")
    counted = FeatureHistogram({"x": (1, 2)}, {"x": 0}, 3, FINGERPRINT)
    assert names_only.merge(counted).counts == {"x": (1, 2)} == counted.merge(names_only).counts


@SETTINGS
@given(error_sums(), error_sums(), error_sums())
def test_error_sums_merge_is_exactly_associative_and_commutative(a: ErrorSums, b: ErrorSums, c: ErrorSums) -> None:
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(ErrorSums()) == a
    assert a.merge(b).merge(c).mean() == c.merge(a).merge(b).mean()  # bit for bit


@SETTINGS
@given(performance_sums(), performance_sums(), performance_sums())
def test_performance_sums_merge_is_associative_and_commutative(
    a: PerformanceSums, b: PerformanceSums, c: PerformanceSums
) -> None:
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(PerformanceSums.empty()) == a


@SETTINGS
@given(st.lists(ERRORS, max_size=40), st.data())
def test_split_update_and_merge_equals_one_pass(errors: list[float], data: st.DataObject) -> None:
    whole = ErrorSums().update_many(np.array(errors))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(errors)), max_size=4)))
    parts = np.split(np.array(errors, dtype=np.float64), cuts)
    merged = ErrorSums()
    for part in reversed(parts):  # any order
        merged = merged.merge(ErrorSums().update_many(part))
    folded = ErrorSums()
    for e in errors:
        folded = folded.update(e)
    assert merged == whole == folded
    assert whole.total_units == sum(Fraction(e) for e in errors) * 2**1074
    if errors:
        assert whole.mean() == float(sum(Fraction(e) for e in errors) / len(errors))  # correctly rounded


@SETTINGS
@given(st.lists(ERRORS, max_size=30))
def test_vectorised_exact_sum_equals_the_scalar_conversion(errors: list[float]) -> None:
    assert exact_units_sum(np.array(errors, dtype=np.float64)) == sum(exact_units(e) for e in errors)


def _records(draw: st.DrawFn, n: int) -> list[dict[str, object]]:
    value = st.one_of(st.none(), st.floats(-100, 100), st.integers(-5, 5), st.sampled_from(["a", "b", "c", True]))
    return [
        {"features": draw(st.dictionaries(st.sampled_from(["amount", "industry", "extra"]), value, max_size=3)),
         "prediction": 0.5}
        for _ in range(n)
    ]


BASELINE = build_baseline(
    [{"features": {"amount": float(v), "industry": c}, "prediction": 0.5}
     for v, c in zip(range(100), ["a", "b", "c", "a"] * 25, strict=True)],
    model_id="m", model_version="1", tenant_id=None, task="classification",
)


@SLOW_SETTINGS
@given(st.data())
def test_counting_parts_and_merging_equals_counting_the_whole(data: st.DataObject) -> None:
    records = _records(data.draw, data.draw(st.integers(0, 40)))
    features = [r["features"] for r in records]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(features)), max_size=5)))
    bounds = [0, *cuts, len(features)]
    merged = FeatureHistogram.empty()
    for lo, hi in pairwise(bounds):
        merged = count_batch(BASELINE, features[lo:hi]).merge(merged)  # type: ignore[arg-type]
    whole = count_batch(BASELINE, features)  # type: ignore[arg-type]
    assert merged == whole
    assert all(sum(c) == len(features) for c in whole.counts.values())
    p = data.draw(st.lists(st.floats(0, 1), min_size=len(records), max_size=len(records)))
    y = data.draw(st.lists(st.sampled_from([0, 1]), min_size=len(records), max_size=len(records)))
    merged_perf = PerformanceSums.empty()
    for lo, hi in pairwise(bounds):
        merged_perf = merged_perf.merge(PerformanceSums.empty().update_many(p[lo:hi], y[lo:hi]))
    assert merged_perf == PerformanceSums.empty().update_many(p, y)


@SETTINGS
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=12), st.data())
def test_psi_is_non_negative_and_zero_for_identical_shares(counts: list[int], data: st.DataObject) -> None:
    if sum(counts) == 0:
        counts[0] = 1
    array = np.array(counts)
    shares = array / array.sum()
    value, terms = psi(shares, array)
    assert value == 0.0 and np.all(terms == 0.0)
    expected = np.array(data.draw(st.lists(st.floats(0, 1), min_size=len(counts), max_size=len(counts))))
    value, terms = psi(expected, array)
    assert value >= 0.0 and np.all(terms >= 0.0) and math.isfinite(value)


def _roundtrip(obj: object) -> object:
    return orjson.loads(orjson.dumps(obj))


@SETTINGS
@given(histograms(), error_sums(), performance_sums())
def test_state_encodings_round_trip_exactly_through_orjson_bytes(
    histogram: FeatureHistogram, sums: ErrorSums, performance: PerformanceSums
) -> None:
    assert FeatureHistogram.from_json(_roundtrip(histogram.to_json())) == histogram
    assert ErrorSums.from_json(_roundtrip(sums.to_json())) == sums
    assert PerformanceSums.from_json(_roundtrip(performance.to_json())) == performance


@SLOW_SETTINGS
@given(st.data())
def test_baseline_round_trips_through_orjson_bytes(data: st.DataObject) -> None:
    records = _records(data.draw, data.draw(st.integers(1, 30)))
    baseline = build_baseline(records, model_id="m", model_version="7", tenant_id=data.draw(st.none() | st.just("t")),
                              task=data.draw(st.sampled_from(["classification", "regression"])))
    again = Baseline.from_dict(_roundtrip(baseline.to_dict()))  # type: ignore[arg-type]
    assert again == baseline
    assert again.fingerprint() == baseline.fingerprint()
    assert again.to_dict() == baseline.to_dict()


@pytest.mark.parametrize(
    "bad",
    [None, [1, "0x0p0"], [-1, "0x0p0", "0x0p0"], [1, 0.5, "0x0p0"], [True, "0x0p0", "0x0p0"], [1, "0x1p0", "-0x1p0"]],
)
def test_malformed_error_sums_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        ErrorSums.from_json(bad)


def test_malformed_histograms_are_refused() -> None:
    good = FeatureHistogram({"x": (1, 2)}, {"x": 0}, 3, FINGERPRINT).to_json()
    for key, value in (("n", -1), ("counts", {"x": [1, -2]}), ("counts", {"x": [1.5]}), ("typeMismatch", {"x": "1"}),
                       ("counts", {"x": [1, 2], "y": [3, True]}), ("counts", {"x": [1, 2], "y": (3,)}),
                       ("counts", {"x": [], "y": [0, -1]}), ("counts", {"x": [1], "y": None})):
        with pytest.raises(ValueError):
            FeatureHistogram.from_json({**good, key: value})
    with pytest.raises(ValueError):
        FeatureHistogram.from_json({"n": 1})
