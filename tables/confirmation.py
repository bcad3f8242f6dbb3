"""The confirmation of a detector's candidate change, on fresh data only: what a stream's
detector is fed (a minute's mean as a z-score against the stream's history), and the tests that
confirm or reject a candidate — a fixed-n one-sided z-test at the confirmation count and a
time-uniform confidence sequence at every observation, each at α/2 (tables/continuous_detection.py
decides which stream gets which test, at which α)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from scipy.special import ndtr, ndtri

from model_monitoring.tables.error_sums import ErrorSums

SHARE_VARIANCE_FLOOR = 0.01 * 0.99  # a share's variance as if it were at least 1%
WARMUP_OBSERVATIONS = 10
Z_CLIP = 50.0


def standardized(observation: ErrorSums, history: ErrorSums, min_count: int,
                 variance_floor: float) -> float | None:
    """The observation's mean as a z-score against the stream's history: what the detector is
    fed. Scale-free, so one detector setting serves shares, scores and errors alike (river's
    detectors on raw minute means of noisy errors took ~40 minutes to see a 50% Brier step;
    on z-scores, ~5). None while the history is shorter than WARMUP_OBSERVATIONS observations."""
    if history.n < WARMUP_OBSERVATIONS * min_count or not observation.n:
        return None
    sd_mean = history.std_error() or 0.0
    variance = max(sd_mean * sd_mean * history.n, variance_floor, 1e-12)
    z = ((observation.mean() or 0.0) - (history.mean() or 0.0)) / math.sqrt(variance / observation.n)
    return max(-Z_CLIP, min(Z_CLIP, z))


Decision = Literal["confirm", "reject", "wait"]
# A test: (fresh, history, α, first) -> (decision, reference, threshold, p-value); `first`: the
# fresh data has just reached the confirmation count (the one fixed-n look, `_decide`)
Test = Callable[[ErrorSums, ErrorSums, float, bool], tuple[Decision, float, float, float]]


def cs_radius(n: int, variance: float, alpha: float, rho_count: int) -> float:
    """Half-width, on the mean, of a one-sided time-uniform confidence sequence (Robbins' normal
    mixture, sub-Gaussian with the given per-record variance): with probability ≥ 1 − α the true
    mean stays inside at every n at once, so the fresh data may be tested after every
    observation and stop as soon as it is decisive. ρ tunes the sequence to be tightest
    near `rho_count` records."""
    v = variance * n
    rho = variance * rho_count
    return math.sqrt((v + rho) * (2 * math.log(1 / alpha) + math.log((v + rho) / rho))) / n


def _decide(value: float, threshold: float, variance: float, alpha: float, n: int, confirm: int,
            first: bool) -> Decision:
    """Two looks, each at α/2 (so at most α together): once, when the fresh data first holds
    `confirm` records, a fixed-n one-sided z-test (the most power at that n); at every
    observation, the time-uniform confidence sequence (it keeps looking until it is decisive,
    or `20 × confirm` records). A change large enough is confirmed at the confirmation count;
    a smaller one later, by the sequence."""
    if first and value + ndtri(alpha / 2) * math.sqrt(variance / n) > threshold:
        return "confirm"
    radius = cs_radius(n, variance, alpha / 2, confirm)
    if value - radius > threshold:
        return "confirm"
    give_up = 20 * confirm
    if value + radius < threshold or n >= give_up:
        return "reject"
    return "wait"


def _p(value: float, threshold: float, variance: float, n: int) -> float:
    """The fixed-n one-sided p-value of the same comparison (reported, not used to decide)."""
    se = math.sqrt(variance / n)
    return float(ndtr(-(value - threshold) / se)) if se > 0 else (0.0 if value > threshold else 1.0)


def _variance(sums: ErrorSums) -> float:
    se = sums.std_error() or 0.0
    return se * se * sums.n


def share_test(expected: float | None, tolerance: float, min_share_change: float, confirm: int) -> Test:
    """A share (missing, type mismatch, out of range) against max(p₀(1+tol), p₀+min change),
    p₀ the baseline's share or else the stream's history."""
    def test(fresh: ErrorSums, history: ErrorSums, alpha: float, first: bool) -> tuple[Decision, float, float, float]:
        p0 = expected if expected is not None else (history.mean() or 0.0)
        threshold = min(max(p0 * (1 + tolerance), p0 + min_share_change), 0.999)
        value = fresh.mean() or 0.0
        # a share of 0 or 1 still has a spread: at least that of a share at the threshold
        variance = max(threshold * (1 - threshold), _variance(fresh))
        return (_decide(value, threshold, variance, alpha, fresh.n, confirm, first), p0, threshold,
                _p(value, threshold, variance, fresh.n))
    return test


def error_test(baseline_value: float | None, tolerance: float, confirm: int) -> Test:
    """The per-outcome error against the baseline's Brier/MAE × (1+tol), else the history's."""
    def test(fresh: ErrorSums, history: ErrorSums, alpha: float, first: bool) -> tuple[Decision, float, float, float]:
        reference = baseline_value if baseline_value is not None else (history.mean() or 0.0)
        threshold = reference * (1 + tolerance)
        value = fresh.mean() or 0.0
        variance = max(_variance(fresh), _variance(history), 1e-12)
        return (_decide(value, threshold, variance, alpha, fresh.n, confirm, first), reference, threshold,
                _p(value, threshold, variance, fresh.n))
    return test


def two_sided_test(tolerance: float, confirm: int) -> Test:
    """The prediction mean, either way, beyond tol × |history mean|."""
    def test(fresh: ErrorSums, history: ErrorSums, alpha: float, first: bool) -> tuple[Decision, float, float, float]:
        reference = history.mean() or 0.0
        margin = tolerance * max(abs(reference), 1e-9)
        value = abs((fresh.mean() or 0.0) - reference)
        variance = max(_variance(fresh), _variance(history), 1e-12)
        return (_decide(value, margin, variance, alpha / 2, fresh.n, confirm, first), reference, reference + margin,
                min(1.0, 2 * _p(value, margin, variance, fresh.n)))
    return test
