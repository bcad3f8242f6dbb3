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
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (feature.bins.n_bins,):
        raise ValueError(f"{feature.bins.name}: {counts.size} counts for {feature.bins.n_bins} bins")
    return feature_verdicts(feature, counts[None, :], baseline_n, thresholds, model_id)[0]


def feature_verdicts(
    feature: FeatureBaseline,
    rows: np.ndarray,
    baseline_n: int,
    thresholds: Thresholds,
    model_id: str,
) -> list[FeatureVerdict]:
    """`evaluate_feature` of each row of ``rows`` (R x bins), in one numpy pass: the PSI, its
    bound and its test of every row at once. Each row's verdict is the one it gets alone, to the
    bit (element-wise arithmetic, and row sums that numpy adds as it adds one row)."""
    warning, critical = thresholds.psi_thresholds(model_id, feature.bins.name)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 2 or rows.shape[1] != feature.bins.n_bins:
        raise ValueError(f"{feature.bins.name}: counts of shape {rows.shape} for {feature.bins.n_bins} bins")
    expected = feature.expected_shares()
    labels = feature.bins.labels()
    current = rows.sum(axis=1)
    empty = FeatureVerdict(None, "insufficient_data", None, warning, None, 0, ())
    out: list[FeatureVerdict] = [empty] * len(rows)
    live = np.flatnonzero(current > 0)  # no current share exists in an empty row
    if not live.size:
        return out
    counts = rows[live]
    sizes = current[live]
    shares = np.asarray(counts, dtype=np.float64)
    actual = np.maximum(shares / shares.sum(axis=1)[:, None], EPSILON)
    reference = np.maximum(np.asarray(expected, dtype=np.float64), EPSILON)
    contributions = (actual - reference) * np.log(actual / reference)
    values = contributions.sum(axis=1)
    tested = np.flatnonzero(sizes >= thresholds.min_samples)
    lower = p_value = gate = np.empty(0)
    if tested.size:
        bound = psi_bound(expected, counts[tested], baseline_n, epsilon=EPSILON)
        lower = bound.lower(thresholds.confidence)
        p_value = bound.p_value(warning)
        gate = bound.gate(warning, thresholds.confidence)
    position = {int(i): j for j, i in enumerate(tested)}
    # numbers leave numpy once per array (`tolist`: Python ints and floats, the same values as
    # int() and float() of each element), not one numpy scalar at a time
    expected_floats = [float(e) for e in expected]
    observed_rows = (counts / sizes[:, None]).tolist()  # each row / its size, element-wise
    contribution_rows = contributions.tolist()
    lower_list, p_list, gate_list = lower.tolist(), p_value.tolist(), gate.tolist()
    for k, (row, size, value) in enumerate(zip(live.tolist(), sizes.tolist(), values.tolist(), strict=True)):
        bins = tuple(
            {"bin": b, "expected": e, "actual": a, "contribution": c}
            for b, e, a, c in zip(labels, expected_floats, observed_rows[k], contribution_rows[k], strict=True)
        )
        j = position.get(k)
        if j is None:
            out[row] = FeatureVerdict(value, "insufficient_data", None, warning, None, size, bins)
            continue
        low, p, g = lower_list[j], p_list[j], gate_list[j]
        if low >= critical:
            out[row] = FeatureVerdict(value, "drift", "critical", critical, g, size, bins, low, p)
        elif low >= warning:
            out[row] = FeatureVerdict(value, "drift", "warning", warning, g, size, bins, low, p)
        else:
            status: FeatureStatus = "ok" if value < warning else "insufficient_data"
            out[row] = FeatureVerdict(value, status, None, warning, g, size, bins, low, p)
    return out


class FeatureVerdicts:
    """Feature verdicts worked out ahead, many at once: `want` each check of a batch of keys,
    `compute` once (one `feature_verdicts` pass per feature baseline and model: a baseline
    shared by many tenants is one pass over all their rows), then `verdict` answers from what
    was computed and works out anything else alone. Every answer is `evaluate_feature`'s."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self._wanted: dict[tuple[int, str, int], tuple[FeatureBaseline, dict[bytes, np.ndarray]]] = {}
        self._ready: dict[tuple[int, str, int, bytes], FeatureVerdict] = {}
        self._kept: list[FeatureBaseline] = []  # ids are keys: the baselines stay alive with them
        self.answered = 0  # verdicts answered from what `compute` worked out

    def want(self, feature: FeatureBaseline, counts: np.ndarray, baseline_n: int, model_id: str) -> None:
        counts = np.asarray(counts, dtype=np.int64)
        group = self._wanted.setdefault((id(feature), model_id, baseline_n), (feature, {}))
        group[1].setdefault(counts.tobytes(), counts)

    def compute(self) -> None:
        for (fid, model_id, baseline_n), (feature, rows) in self._wanted.items():
            if any(r.shape != (feature.bins.n_bins,) for r in rows.values()):
                continue  # worked out alone, where the error is raised with its name
            for raw, verdict in zip(rows, feature_verdicts(feature, np.stack(list(rows.values())), baseline_n,
                                                           self.thresholds, model_id), strict=True):
                self._ready[(fid, model_id, baseline_n, raw)] = verdict
            self._kept.append(feature)
        self._wanted.clear()

    def verdict(self, feature: FeatureBaseline, counts: np.ndarray, baseline_n: int,
                thresholds: Thresholds, model_id: str) -> FeatureVerdict:
        counts = np.asarray(counts, dtype=np.int64)
        if thresholds == self.thresholds:
            ready = self._ready.get((id(feature), model_id, baseline_n, counts.tobytes()))
            if ready is not None:
                self.answered += 1
                return ready
        return evaluate_feature(feature, counts, baseline_n, thresholds, model_id)
