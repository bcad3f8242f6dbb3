"""Brier and MAE against numpy and river on raw values, exact error sums, and the one-sided z-test."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from river import metrics
from scipy.stats import norm

from model_monitoring.tables.error_sums import ErrorSums, PerformanceSums, units_from_text, units_to_text
from model_monitoring.tables.performance import evaluate_metric
from model_monitoring.tables.thresholds import Thresholds


def classification_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    y = (rng.random(n) < p).astype(np.float64)
    return p, y


def test_brier_and_mae_equal_numpy_on_raw_values_to_1e12() -> None:
    for seed in range(20):
        p, y = classification_sample(int(np.random.default_rng(seed).integers(1, 5_000)), seed)
        sums = PerformanceSums.empty().update_many(p, y)
        assert sums.squared.mean() == pytest.approx(float(np.mean((p - y) ** 2)), abs=1e-12)
        assert sums.absolute.mean() == pytest.approx(float(np.mean(np.abs(p - y))), abs=1e-12)
        assert sums.n == p.size


def test_regression_mae_equals_numpy_and_river() -> None:
    rng = np.random.default_rng(11)
    y = rng.normal(1_000, 300, 3_000)
    y_hat = y + rng.normal(5, 50, 3_000)
    sums = PerformanceSums.empty().update_many(y_hat, y)
    river_mae = metrics.MAE()
    for truth, guess in zip(y.tolist(), y_hat.tolist(), strict=True):
        river_mae.update(truth, guess)
    assert sums.absolute.mean() == pytest.approx(float(np.mean(np.abs(y_hat - y))), rel=1e-12)
    assert sums.absolute.mean() == pytest.approx(river_mae.get(), rel=1e-12)


def test_classification_mae_equals_river_streaming_mae() -> None:
    p, y = classification_sample(2_000, 5)
    river_mae = metrics.MAE()
    sums = ErrorSums()
    for truth, guess in zip(y.tolist(), p.tolist(), strict=True):
        river_mae.update(truth, guess)
        sums = sums.update(abs(guess - truth))
    assert sums.mean() == pytest.approx(river_mae.get(), abs=1e-12)


def test_standard_error_equals_numpy_sample_sd_over_sqrt_n() -> None:
    rng = np.random.default_rng(8)
    for n in (2, 3, 50, 10_000):
        errors = rng.gamma(2.0, 0.1, n)
        sums = ErrorSums().update_many(errors)
        assert sums.std_error() == pytest.approx(float(np.std(errors, ddof=1) / math.sqrt(n)), rel=1e-12)
    assert ErrorSums().std_error() is None and ErrorSums().update(0.5).std_error() is None
    assert ErrorSums().mean() is None
    # n·Σe² − (Σe)² is exact, so equal errors whose squares are exact doubles give exactly 0, and
    # others only the rounding of each e² (never float cancellation noise, never a negative variance).
    assert ErrorSums().update_many([0.25] * 1000).std_error() == 0.0
    assert 0.0 <= ErrorSums().update_many([0.3] * 1000).std_error() < 1e-9  # type: ignore[operator]


def test_sums_are_exact_where_float_addition_is_not() -> None:
    errors = [1e16, 1.0, -1e16] * 100 + [0.1] * 10
    sums = ErrorSums().update_many(np.array(errors))
    exact = sum(map(Fraction, errors))
    assert sums.total == float(exact)
    assert sums.mean() == float(exact / len(errors))
    assert float(sum(errors)) != float(exact)  # what a float accumulator would have reported


def test_float_constructor_and_text_form_are_exact() -> None:
    sums = ErrorSums(3, 0.1, 5e-324)
    assert (sums.n, sums.total, sums.total_sq) == (3, 0.1, 5e-324)
    assert ErrorSums(0, 0.0, 0.0) == ErrorSums()
    for value in (0.0, 1.5, -0.1, 5e-324, 1.7976931348623157e308):
        units = ErrorSums(1, value, 0.0).total_units
        text = units_to_text(units)
        assert units_from_text(text) == units
        assert float.fromhex(text) == value  # the text is float.hex-compatible
    with pytest.raises(ValueError):
        ErrorSums().update(math.inf)
    with pytest.raises(ValueError):
        ErrorSums().update_many(np.array([0.1, math.nan]))
    with pytest.raises(ValueError):
        PerformanceSums.empty().update_many([0.1, 0.2], [1.0])


def sums_with(mean: float, sd: float, n: int) -> ErrorSums:
    """Error sums of n values with exactly this sample mean and (approximately) this sd."""
    offsets = np.resize([-1.0, 1.0], n) * sd * math.sqrt((n - 1) / n) if n > 1 else np.zeros(n)
    return ErrorSums().update_many(mean + offsets)


def test_metric_is_none_without_a_baseline_value() -> None:
    assert evaluate_metric("brier", sums_with(0.2, 0.1, 500), None, Thresholds()) is None
    with pytest.raises(ValueError):
        evaluate_metric("rmse", ErrorSums(), 0.1, Thresholds())


def test_metric_insufficient_below_min_outcomes() -> None:
    verdict = evaluate_metric("mae", sums_with(0.9, 0.01, 99), 0.25, Thresholds())
    assert verdict is not None
    assert (verdict.status, verdict.sample_size, verdict.z, verdict.p_value) == ("insufficient_data", 99, None, None)
    assert verdict.threshold == pytest.approx(0.275)
    empty = evaluate_metric("mae", ErrorSums(), 0.25, Thresholds())
    assert empty is not None and (empty.value, empty.status) == (None, "insufficient_data")


def test_metric_degraded_needs_value_over_threshold_and_a_significant_z() -> None:
    thresholds = Thresholds()
    degraded = evaluate_metric("brier", sums_with(0.19, 0.1, 812), 0.12, thresholds)
    assert degraded is not None and degraded.status == "degraded"
    sums = sums_with(0.19, 0.1, 812)
    expected_z = (sums.mean() - 0.12 * 1.1) / sums.std_error()  # type: ignore[operator]
    assert degraded.z == pytest.approx(expected_z, rel=1e-12)
    assert degraded.threshold == 0.12 * (1 + 0.10)
    # Over the threshold, but within noise: z under the one-sided 95% quantile.
    noisy = evaluate_metric("brier", sums_with(0.14, 0.3, 200), 0.12, thresholds)
    assert noisy is not None and noisy.value is not None and noisy.value > noisy.threshold  # type: ignore[operator]
    assert noisy.z is not None and 0 < noisy.z < norm.ppf(0.95)
    assert noisy.status == "ok"
    better = evaluate_metric("mae", sums_with(0.2, 0.1, 1000), 0.25, thresholds)
    assert better is not None and better.status == "ok" and better.z is not None and better.z < 0


def test_z_decision_sits_exactly_at_the_normal_quantile() -> None:
    se = 0.01
    n = 400
    sd = se * math.sqrt(n)
    threshold = 0.1 * 1.1
    just_over = evaluate_metric("mae", sums_with(threshold + 1.01 * norm.ppf(0.95) * se, sd, n), 0.1, Thresholds())
    just_under = evaluate_metric("mae", sums_with(threshold + 0.99 * norm.ppf(0.95) * se, sd, n), 0.1, Thresholds())
    assert just_over is not None and just_under is not None
    assert (just_over.status, just_under.status) == ("degraded", "ok")
    # the p-value is the same test's: 1 − Φ(z), just under 0.05 when degraded, just over when not
    assert just_over.p_value == pytest.approx(norm.sf(just_over.z), rel=1e-12)
    assert just_over.p_value is not None and just_under.p_value is not None
    assert just_over.p_value < 0.05 < just_under.p_value


def test_zero_standard_error_decides_on_the_value_alone() -> None:
    over = evaluate_metric("mae", ErrorSums().update_many([0.5] * 200), 0.25, Thresholds())
    under = evaluate_metric("mae", ErrorSums().update_many([0.25] * 200), 0.24, Thresholds())
    assert over is not None and (over.status, over.z, over.p_value) == ("degraded", None, 0.0)
    assert under is not None and (under.status, under.p_value) == ("ok", 1.0)
