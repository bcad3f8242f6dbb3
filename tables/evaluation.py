"""One snapshot (CONTRACT ``ml.model.monitoring.snapshot``) of one (tenant, model, version, segment):
PSI per feature and Brier/MAE, from merged state. Shared by the stream's evaluator and ``check``."""

from __future__ import annotations

from collections.abc import Iterable

from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.error_sums import ErrorSums, PerformanceSums
from model_monitoring.tables.histogram import FeatureHistogram, counts_array
from model_monitoring.tables.performance import MetricVerdict, evaluate_metric
from model_monitoring.tables.psi import FeatureVerdict, evaluate_feature
from model_monitoring.tables.thresholds import Thresholds


def evaluate_snapshot(
    *,
    baseline: Baseline | None,
    histogram: FeatureHistogram,
    performance: PerformanceSums,
    thresholds: Thresholds,
    tenant_id: str,
    model_id: str,
    model_version: str,
    segment: str | None,
    window_start: str | None,
    window_end: str | None,
    job_run_id: str | None,
    feature_names: Iterable[str] = (),
) -> dict[str, object]:
    """The snapshot object, values unrounded.

    Every baseline feature is checked; a name in ``feature_names`` that the baseline lacks (or
    every name, without a baseline) is ``no_baseline``. Classification reports Brier and MAE,
    regression MAE; a metric is reported when the baseline has a value to compare it with.
    Raises ValueError when the histogram was counted with other bins than the baseline's.
    """
    if baseline is not None and histogram.fingerprint not in ("", baseline.fingerprint()):
        raise ValueError(
            f"histogram bins {histogram.fingerprint} are not the baseline's {baseline.fingerprint()}"
        )
    features: dict[str, object] = {}
    metrics: dict[str, object] = {}
    if baseline is not None:
        for name, feature in baseline.features.items():
            counts = counts_array(histogram, name, feature.bins.n_bins)
            verdict = evaluate_feature(feature, counts, baseline.sample_size, thresholds, model_id)
            features[name] = feature_entry(verdict, histogram.type_mismatch.get(name, 0))
        checks: list[tuple[str, ErrorSums, float | None]] = [("mae", performance.absolute, baseline.mae)]
        if baseline.task == "classification":
            checks.insert(0, ("brier", performance.squared, baseline.brier))
        for metric, sums, baseline_value in checks:
            metric_verdict = evaluate_metric(metric, sums, baseline_value, thresholds)
            if metric_verdict is not None:
                metrics[metric] = metric_entry(metric_verdict)
    for name in sorted(set(feature_names) - set(features)):
        features[name] = {
            "metric": "psi", "value": None, "status": "no_baseline", "severity": None,
            "threshold": None, "gate": None, "psiLower": None, "pValue": None, "qValue": None,
            "sampleSize": histogram.n, "typeMismatch": histogram.type_mismatch.get(name, 0), "bins": [],
        }
    return {
        "jobRunId": job_run_id,
        "tenantId": tenant_id,
        "modelId": model_id,
        "modelVersion": model_version,
        "segment": segment,
        "windowStart": window_start,
        "windowEnd": window_end,
        "sampleSize": histogram.n,
        "baselineSampleSize": baseline.sample_size if baseline is not None else None,
        "features": features,
        "performance": metrics,
    }


def feature_entry(verdict: FeatureVerdict, type_mismatch: int) -> dict[str, object]:
    """The snapshot's ``features.<name>`` object (``threshold``, ``psiLower``, ``pValue``,
    ``qValue`` and ``typeMismatch`` are added fields; ``qValue`` is set by tables/fdr.py)."""
    return {
        "metric": "psi",
        "value": verdict.value,
        "status": verdict.status,
        "severity": verdict.severity,
        "threshold": verdict.threshold,
        "gate": verdict.gate,
        "psiLower": verdict.psi_lower,
        "pValue": verdict.p_value,
        "qValue": None,
        "sampleSize": verdict.sample_size,
        "typeMismatch": type_mismatch,
        "bins": [dict(b) for b in verdict.bins],
    }


def metric_entry(verdict: MetricVerdict) -> dict[str, object]:
    """The snapshot's ``performance.<metric>`` object (``z``, ``pValue`` and ``qValue`` are added
    fields; ``qValue`` is set by tables/fdr.py)."""
    return {
        "value": verdict.value,
        "baseline": verdict.baseline,
        "threshold": verdict.threshold,
        "status": verdict.status,
        "sampleSize": verdict.sample_size,
        "z": verdict.z,
        "pValue": verdict.p_value,
        "qValue": None,
    }
