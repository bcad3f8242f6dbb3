"""False-discovery control: Benjamini–Hochberg q-values over one family of checks, and their
effect on the snapshots of one (tenant, model, version) in one run.

The drift family is every PSI check with a p-value (each feature, and the prediction score when
the snapshot has one) of every segment view, overall included; the performance family is every
metric check with a p-value. A check stays in ``drift`` (``degraded``) only when its q-value is at
most ``fdr_q``; ``fdr_q = 0`` turns the control off (q-values are still reported).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from model_monitoring.tables.thresholds import Thresholds


def bh_q_values(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values, in the order given: q₍ᵢ₎ = min over j >= i of
    min(1, m·p₍ⱼ₎/j) for the p-values sorted ascending. Rejecting every q <= α is the BH
    step-up procedure at level α."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must be a flat sequence of numbers in [0, 1]")
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    q = np.empty(m)
    q[order] = q_sorted
    return q


def with_q_values(snapshots: Sequence[Mapping[str, Any]], thresholds: Thresholds) -> list[dict[str, Any]]:
    """Copies of the snapshots of one (tenant, model, version) in one run, every check's
    ``qValue`` set (None for a check without a p-value), and, when ``thresholds.fdr_q`` > 0, a
    drift check with q > fdr_q demoted to ``insufficient_data`` (its PSI is over the warning
    threshold, but not shown with confidence in this family) and a degraded metric to ``ok``."""
    copies = [_copy(snapshot) for snapshot in snapshots]
    drift, performance = list(_drift_checks(copies)), list(_performance_checks(copies))
    for family in (drift, performance):
        tested = [check for _, _, check in family if check.get("pValue") is not None]
        for check, q in zip(tested, bh_q_values([c["pValue"] for c in tested]), strict=True):
            check["qValue"] = float(q)
    if thresholds.fdr_q > 0:
        for model, name, check in drift:
            if check.get("status") == "drift" and not _discovered(check, thresholds.fdr_q):
                warning, _ = thresholds.psi_thresholds(model, name)
                check.update(status="insufficient_data", severity=None, threshold=warning)
        for _, _, check in performance:
            if check.get("status") == "degraded" and not _discovered(check, thresholds.fdr_q):
                check["status"] = "ok"
    return copies


def _discovered(check: Mapping[str, Any], fdr_q: float) -> bool:
    q = check.get("qValue")
    return q is not None and q <= fdr_q


def _copy(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """The snapshot with its check objects copied (the checks are what this module changes)."""
    out = dict(snapshot)
    for section in ("features", "performance"):
        if isinstance(out.get(section), Mapping):
            out[section] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in out[section].items()}
    if isinstance(out.get("prediction"), Mapping):
        out["prediction"] = dict(out["prediction"])
    views = out.get("performanceViews")
    if isinstance(views, Mapping) and out.get("windowBasis") in views:
        # the configured view is `performance` itself: it shows the same q-values and statuses
        out["performanceViews"] = {**views, out["windowBasis"]: out["performance"]}
    return out


Check = tuple[str, str, dict[str, Any]]  # (model, feature or metric, the check object)


def _checks(snapshot: Mapping[str, Any], section: str) -> Iterator[Check]:
    checks = snapshot.get(section)
    if isinstance(checks, dict):
        for name, check in sorted(checks.items()):
            if isinstance(check, dict):
                yield snapshot["modelId"], name, check


def _drift_checks(snapshots: Sequence[dict[str, Any]]) -> Iterator[Check]:
    """Every feature's PSI check, and the prediction score's (named ``prediction``, as in its events)."""
    for snapshot in snapshots:
        yield from _checks(snapshot, "features")
        if isinstance(snapshot.get("prediction"), dict):
            yield snapshot["modelId"], "prediction", snapshot["prediction"]


def _performance_checks(snapshots: Sequence[dict[str, Any]]) -> Iterator[Check]:
    for snapshot in snapshots:
        yield from _checks(snapshot, "performance")
