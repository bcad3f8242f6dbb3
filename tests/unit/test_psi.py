"""PSI against a direct computation, thresholds, and feature verdicts (the bound itself:
test_psi_bound.py; its false alarms and power: test_false_alarms.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model_monitoring.tables.baseline import FeatureBaseline
from model_monitoring.tables.binning import FeatureBins
from model_monitoring.tables.psi import EPSILON, evaluate_feature, psi
from model_monitoring.tables.psi_bound import psi_bound
from model_monitoring.tables.thresholds import Thresholds

AMOUNT = FeatureBaseline(
    FeatureBins("amount", "numeric", edges=(10.0, 25.5, 40.0)), (0.2, 0.3, 0.3, 0.2), other=0.0, missing=0.0
)
INDUSTRY = FeatureBaseline(
    FeatureBins("industry", "categorical", categories=("retail", "tech")), (0.6, 0.35), other=0.05, missing=0.0
)


def direct_psi(expected: list[float], counts: list[int]) -> float:
    """PSI written out term by term with math.log, from the definition."""
    total = sum(counts)
    value = 0.0
    for e, c in zip(expected, counts, strict=True):
        a = max(c / total, 1e-4)
        e = max(e, 1e-4)
        value += (a - e) * math.log(a / e)
    return value


def test_psi_equals_a_direct_computation_to_1e12() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        k = int(rng.integers(2, 30))
        expected = rng.dirichlet(np.ones(k))
        expected[rng.random(k) < 0.2] = 0.0  # some empty baseline bins
        counts = rng.integers(0, 50, k) * (rng.random(k) < 0.8)
        if counts.sum() == 0:
            counts[0] = 1
        value, terms = psi(expected, counts)
        assert value == pytest.approx(direct_psi(expected.tolist(), counts.tolist()), abs=1e-12)
        assert float(terms.sum()) == pytest.approx(value, abs=1e-15)


def test_psi_on_raw_values_equals_numpy_on_the_same_raw_values() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(20, 10, 5_000)
    current = rng.normal(24, 12, 3_000)
    bins = AMOUNT.bins
    expected = np.r_[np.histogram(reference, [-np.inf, *bins.edges, np.inf])[0] / reference.size, 0.0]
    counts, _ = bins.bin_values(current.tolist())
    direct = np.r_[np.histogram(current, [-np.inf, *bins.edges, np.inf])[0] / current.size, 0.0]
    a, e = np.maximum(direct, EPSILON), np.maximum(expected, EPSILON)
    assert psi(expected, counts)[0] == pytest.approx(float(np.sum((a - e) * np.log(a / e))), abs=1e-12)


def test_an_empty_bin_gives_a_large_finite_term_not_infinity() -> None:
    value, terms = psi(np.array([0.5, 0.5, 0.0]), np.array([0, 10, 0]))
    assert math.isfinite(value)
    assert terms[0] == pytest.approx((EPSILON - 0.5) * math.log(EPSILON / 0.5))
    assert terms[2] == 0.0
    with pytest.raises(ValueError):
        psi(np.array([0.5, 0.5]), np.array([0, 0]))
    with pytest.raises(ValueError):
        psi(np.array([0.5, 0.5]), np.array([1, 0, 0]))


def counts_for(shares: list[float], m: int) -> np.ndarray:
    return np.round(np.array(shares) * m).astype(np.int64)


def test_verdict_ok_when_psi_is_under_the_warning_threshold() -> None:
    verdict = evaluate_feature(AMOUNT, counts_for([0.21, 0.29, 0.3, 0.2, 0.0], 1000), 20_000, Thresholds(), "m")
    assert (verdict.status, verdict.severity, verdict.threshold, verdict.sample_size) == ("ok", None, 0.1, 1000)
    assert verdict.value is not None and verdict.value < 0.1


def test_verdict_drift_warning_and_critical() -> None:
    warning = evaluate_feature(AMOUNT, counts_for([0.1, 0.25, 0.35, 0.3, 0.0], 5000), 20_000, Thresholds(), "m")
    assert warning.value is not None and 0.1 <= warning.value < 0.25
    assert (warning.status, warning.severity, warning.threshold) == ("drift", "warning", 0.1)
    assert warning.psi_lower is not None and 0.1 <= warning.psi_lower < 0.25
    critical = evaluate_feature(AMOUNT, counts_for([0.05, 0.1, 0.25, 0.6, 0.0], 5000), 20_000, Thresholds(), "m")
    assert (critical.status, critical.severity, critical.threshold) == ("drift", "critical", 0.25)
    assert critical.psi_lower is not None and 0.25 <= critical.psi_lower < critical.value  # type: ignore[operator]
    assert critical.p_value is not None and critical.p_value < 1e-12
    assert [b["bin"] for b in critical.bins] == AMOUNT.bins.labels()
    assert sum(b["contribution"] for b in critical.bins) == pytest.approx(critical.value, abs=1e-15)  # type: ignore[misc]
    assert [b["expected"] for b in critical.bins] == [0.2, 0.3, 0.3, 0.2, 0.0]
    assert [b["actual"] for b in critical.bins] == [0.05, 0.1, 0.25, 0.6, 0.0]


def test_verdict_reports_the_bound_its_p_value_and_the_gate_it_implies() -> None:
    counts = counts_for([0.1, 0.25, 0.35, 0.3, 0.0], 5000)
    verdict = evaluate_feature(AMOUNT, counts, 20_000, Thresholds(), "m")
    bound = psi_bound(AMOUNT.expected_shares(), counts, 20_000, epsilon=EPSILON)
    assert verdict.value == pytest.approx(float(bound.value[0]), abs=1e-15)
    assert verdict.psi_lower == float(bound.lower(0.95)[0])
    assert verdict.p_value == float(bound.p_value(0.1)[0])
    # the gate is the plug-in PSI the check had to reach: value >= gate exactly when psiLower >= 0.1
    assert verdict.gate == pytest.approx(0.1 + verdict.value - verdict.psi_lower, rel=1e-12)  # type: ignore[operator]


def test_verdict_insufficient_data_below_min_samples_or_when_the_bound_is_under_the_threshold() -> None:
    few = evaluate_feature(AMOUNT, counts_for([0.05, 0.1, 0.25, 0.6, 0.0], 99), 20_000, Thresholds(), "m")
    assert (few.status, few.severity) == ("insufficient_data", None)
    assert few.value is not None and few.value > 0.25  # the value is still reported
    assert (few.psi_lower, few.p_value, few.gate) == (None, None, None)  # no test below min_samples
    # PSI over the threshold, but its lower bound is not: the sample cannot tell it from noise.
    loose = Thresholds(min_samples=10)
    noisy = evaluate_feature(AMOUNT, np.array([1, 5, 4, 2, 0]), 20_000, loose, "m")
    assert noisy.value is not None and noisy.gate is not None and noisy.psi_lower is not None
    assert 0.1 <= noisy.value < noisy.gate
    assert noisy.psi_lower < 0.1 and noisy.p_value is not None and noisy.p_value > 0.05
    assert noisy.status == "insufficient_data"
    empty = evaluate_feature(AMOUNT, np.zeros(5, dtype=np.int64), 20_000, Thresholds(), "m")
    assert (empty.value, empty.status, empty.gate, empty.sample_size, empty.bins) == (None, "insufficient_data", None, 0, ())


def test_unseen_categories_land_in_other_and_drift() -> None:
    counts, _ = INDUSTRY.bins.bin_values(["retail"] * 300 + ["tech"] * 200 + ["crypto"] * 500)
    verdict = evaluate_feature(INDUSTRY, counts, 10_000, Thresholds(), "m")
    assert counts.tolist() == [300, 200, 500, 0]
    assert (verdict.status, verdict.severity) == ("drift", "critical")
    assert max(verdict.bins, key=lambda b: b["contribution"])["bin"] == "other"  # type: ignore[arg-type,return-value]


def test_all_missing_current_sample_drifts_with_a_finite_psi() -> None:
    verdict = evaluate_feature(AMOUNT, np.array([0, 0, 0, 0, 500]), 20_000, Thresholds(), "m")
    assert verdict.value is not None and math.isfinite(verdict.value)
    assert (verdict.status, verdict.severity) == ("drift", "critical")


def test_wrong_number_of_counts_is_refused() -> None:
    with pytest.raises(ValueError):
        evaluate_feature(AMOUNT, np.array([1, 2, 3]), 20_000, Thresholds(), "m")


def test_thresholds_overrides_most_specific_first() -> None:
    thresholds = Thresholds(overrides={"risk": {"psi_warning": 0.2, "psi_critical": 0.4}, "risk:amount": {"psi_critical": 0.5}})
    assert thresholds.psi_thresholds("other-model", "amount") == (0.1, 0.25)
    assert thresholds.psi_thresholds("risk", "industry") == (0.2, 0.4)
    assert thresholds.psi_thresholds("risk", "amount") == (0.2, 0.5)
    counts = counts_for([0.1, 0.25, 0.35, 0.3, 0.0], 5000)  # PSI ≈ 0.15: a warning by default
    assert evaluate_feature(AMOUNT, counts, 20_000, Thresholds(), "m").status == "drift"
    assert evaluate_feature(AMOUNT, counts, 20_000, thresholds, "risk").status == "ok"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"psi_warning": 0.3, "psi_critical": 0.2},
        {"psi_warning": 0.0},
        {"min_samples": 0},
        {"tolerance": -0.1},
        {"confidence": 1.0},
        {"fdr_q": 1.0},
        {"fdr_q": -0.01},
        {"overrides": {"m": {"psi_alert": 0.3}}},
        {"overrides": {"m": {"psi_warning": -1.0}}},
    ],
)
def test_invalid_thresholds_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Thresholds(**kwargs)  # type: ignore[arg-type]


def test_an_override_that_inverts_warning_and_critical_is_refused_when_used() -> None:
    thresholds = Thresholds(overrides={"m:x": {"psi_warning": 0.5}})
    with pytest.raises(ValueError):
        thresholds.psi_thresholds("m", "x")
