"""Brier/MAE verdict: is the current mean error significantly over the baseline's tolerance?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from scipy.special import ndtr

from model_monitoring.tables.error_sums import ErrorSums
from model_monitoring.tables.thresholds import Thresholds, z_quantile

Metric = Literal["brier", "mae"]
MetricStatus = Literal["ok", "degraded", "insufficient_data"]


@dataclass(frozen=True)
class MetricVerdict:
    """One performance check: the current value against ``threshold = baseline·(1 + tolerance)``."""

    metric: Metric
    value: float | None
    baseline: float | None
    threshold: float | None
    status: MetricStatus
    sample_size: int
    z: float | None  # (value − threshold) / standard error; None when not computed
    p_value: float | None = None  # of H0: true mean error <= threshold; None below min_outcomes


def evaluate_metric(
    metric: str, sums: ErrorSums, baseline_value: float | None, thresholds: Thresholds
) -> MetricVerdict | None:
    """``degraded`` iff n >= min_outcomes, mean > threshold, and the one-sided z-test of the mean
    against the threshold is significant at ``confidence``. None when there is no baseline value.

    With a zero standard error (every error equal) the mean is known exactly, so it is degraded as
    soon as it is over the threshold, and z is None (the p-value is then 0 or 1). The p-value is
    that of the same test, 1 − Φ(z).
    """
    if metric not in ("brier", "mae"):
        raise ValueError(f"unknown metric {metric!r}")
    name = cast(Metric, metric)
    if baseline_value is None:
        return None
    threshold = baseline_value * (1.0 + thresholds.tolerance)
    value = sums.mean()
    n = sums.n
    if value is None or n < thresholds.min_outcomes:
        return MetricVerdict(name, value, baseline_value, threshold, "insufficient_data", n, None)
    std_error = sums.std_error()
    z = None if not std_error else (value - threshold) / std_error
    significant = value > threshold if z is None else z > z_quantile(float(thresholds.confidence))
    status: MetricStatus = "degraded" if value > threshold and significant else "ok"
    p_value = (0.0 if value > threshold else 1.0) if z is None else float(ndtr(-z))
    return MetricVerdict(name, value, baseline_value, threshold, status, n, z, p_value)
