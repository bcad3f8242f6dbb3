"""Population Stability Index per feature, and the feature's drift verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from model_monitoring.tables.baseline import FeatureBaseline
from model_monitoring.tables.psi_bound import psi_bound
from model_monitoring.tables.thresholds import Thresholds

EPSILON = 1e-4  # shares are clipped here so that an empty bin gives a large, finite term

FeatureStatus = Literal["ok", "drift", "insufficient_data", "no_baseline"]
Severity = Literal["warning", "critical"]


def psi(expected: np.ndarray, actual_counts: np.ndarray) -> tuple[float, np.ndarray]:
    """PSI = Σ (aᵢ − eᵢ)·ln(aᵢ/eᵢ) over shares clipped at EPSILON, and each bin's term.

    Every term is >= 0 (aᵢ − eᵢ and ln(aᵢ/eᵢ) share their sign), so the PSI is too.
    """
    expected = np.asarray(expected, dtype=np.float64)
    counts = np.asarray(actual_counts, dtype=np.float64)
    if expected.shape != counts.shape:
        raise ValueError(f"{expected.size} expected shares but {counts.size} counts")
    total = counts.sum()
    if total <= 0:
        raise ValueError("PSI of an empty sample")
    actual = np.maximum(counts / total, EPSILON)
    reference = np.maximum(expected, EPSILON)
    contributions = (actual - reference) * np.log(actual / reference)
    return float(contributions.sum()), contributions


@dataclass(frozen=True)
class FeatureVerdict:
    """The PSI check of one feature: value, status, severity, the bound and its test, the gate
    and the per-bin breakdown."""

    value: float | None
    status: FeatureStatus
    severity: Severity | None
    threshold: float | None  # the threshold crossed, else the warning threshold
    gate: float | None  # the plug-in PSI at which psiLower reaches the warning threshold
    sample_size: int
    bins: tuple[dict[str, object], ...]
    psi_lower: float | None = None  # lower confidence bound of the true PSI
    p_value: float | None = None  # of H0: true PSI <= the warning threshold


def evaluate_feature(
    feature: FeatureBaseline,
    counts: np.ndarray,
    baseline_n: int,
    thresholds: Thresholds,
    model_id: str,
) -> FeatureVerdict:
    """Drift verdict of one feature's current counts against its baseline shares.

    ``drift`` needs M >= min_samples and psiLower, the lower confidence bound of the true PSI at
    ``thresholds.confidence`` (tables/psi_bound.py), at or over the warning threshold; the
    severity is ``critical`` when psiLower is at or over the critical one. Otherwise a PSI at or
    over the warning threshold, or too few events, is ``insufficient_data``, and anything else
    ``ok``. Below min_samples no bound is computed (psiLower, pValue and gate are None).
    """
    warning, critical = thresholds.psi_thresholds(model_id, feature.bins.name)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (feature.bins.n_bins,):
        raise ValueError(f"{feature.bins.name}: {counts.size} counts for {feature.bins.n_bins} bins")
    expected = feature.expected_shares()
    labels = feature.bins.labels()
    current = int(counts.sum())
    if current == 0:  # no current share exists, so no bin can be compared
        return FeatureVerdict(None, "insufficient_data", None, warning, None, 0, ())
    value, contributions = psi(expected, counts)
    actual = counts / current
    bins = tuple(
        {"bin": b, "expected": float(e), "actual": float(a), "contribution": float(c)}
        for b, e, a, c in zip(labels, expected, actual, contributions, strict=True)
    )
    if current < thresholds.min_samples:
        return FeatureVerdict(value, "insufficient_data", None, warning, None, current, bins)
    bound = psi_bound(expected, counts, baseline_n, epsilon=EPSILON)
    lower = float(bound.lower(thresholds.confidence)[0])
    p_value = float(bound.p_value(warning)[0])
    gate = float(bound.gate(warning, thresholds.confidence)[0])
    if lower >= critical:
        return FeatureVerdict(value, "drift", "critical", critical, gate, current, bins, lower, p_value)
    if lower >= warning:
        return FeatureVerdict(value, "drift", "warning", warning, gate, current, bins, lower, p_value)
    status: FeatureStatus = "ok" if value < warning else "insufficient_data"
    return FeatureVerdict(value, status, None, warning, gate, current, bins, lower, p_value)
