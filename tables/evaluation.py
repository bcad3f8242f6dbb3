"""One snapshot (CONTRACT ``ml.model.monitoring.snapshot``) of one (tenant, model, version, segment):
PSI per feature and Brier/MAE, from merged state. Shared by the stream's evaluator and ``check``."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.calibration import ReliabilityBins, ece_test
from model_monitoring.tables.error_sums import ErrorSums, PerformanceSums
from model_monitoring.tables.histogram import FeatureHistogram, counts_array
from model_monitoring.tables.label_health import CoveragePolicy, labels_report
from model_monitoring.tables.partial import PartialState
from model_monitoring.tables.performance import MetricVerdict, evaluate_metric
from model_monitoring.tables.psi import FeatureVerdict, FeatureVerdicts, evaluate_feature
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
    state: PartialState | None = None,
    window_end_ms: int | None = None,
    verdicts: FeatureVerdicts | None = None,
) -> dict[str, object]:
    """The snapshot object, values unrounded (`verdicts`: the feature checks worked out ahead
    for many snapshots at once; the same values).

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
            verdict = (verdicts.verdict(feature, counts, baseline.sample_size, thresholds, model_id)
                       if verdicts is not None else
                       evaluate_feature(feature, counts, baseline.sample_size, thresholds, model_id))
            features[name] = feature_entry(verdict, histogram.type_mismatch.get(name, 0))
        if state is None:  # the prediction view only, as before the outcome clock
            metrics = performance_view(baseline, performance, None, thresholds, None, None)
    snapshot_extra: dict[str, object] = {}
    if state is not None:
        snapshot_extra, metrics = outcome_clock(
            baseline=baseline, state=state, thresholds=thresholds,
            window_end_ms=window_end_ms, model_id=model_id)
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
        **snapshot_extra,
    }


def performance_view(baseline: Baseline, sums: PerformanceSums, calibration: ReliabilityBins | None,
                     thresholds: Thresholds, window_basis: str | None,
                     expected_brier: float | None) -> dict[str, object]:
    """One view's checks: brier (classification), mae, and ece (classification, when the
    baseline has it and the view has reliability bins)."""
    metrics: dict[str, object] = {}
    checks: list[tuple[str, ErrorSums, float | None]] = [("mae", sums.absolute, baseline.mae)]
    if baseline.task == "classification":
        checks.insert(0, ("brier", sums.squared, baseline.brier))
    for metric, metric_sums, baseline_value in checks:
        metric_verdict = evaluate_metric(metric, metric_sums, baseline_value, thresholds)
        if metric_verdict is not None:
            metrics[metric] = metric_entry(metric_verdict)
    if calibration is not None and baseline.task == "classification":
        ece = ece_test(calibration, baseline.ece, baseline.ece_null_mean, tolerance=thresholds.tolerance,
                       confidence=thresholds.confidence, min_outcomes=thresholds.min_outcomes)
        if ece is not None:
            metrics["ece"] = {"value": ece.value, "baseline": ece.baseline, "threshold": ece.threshold,
                              "status": ece.status, "sampleSize": ece.sample_size, "z": None,
                              "pValue": ece.p_value, "qValue": None, "nullMean": ece.null_mean,
                              "clearThreshold": ece.clear_threshold}
    if window_basis is not None:
        for entry in metrics.values():
            entry["windowBasis"] = window_basis  # type: ignore[index]
    if "brier" in metrics and window_basis is not None:
        metrics["brier"]["expectedBrier"] = expected_brier  # type: ignore[index]
    return metrics


def outcome_clock(*, baseline: Baseline | None, state: PartialState, thresholds: Thresholds,
                  window_end_ms: int | None, model_id: str) -> tuple[dict[str, object], dict[str, object]]:
    """The snapshot's outcome-clock fields (`windowBasis`, `performanceViews`, `calibration`,
    `expectedBrier`, `prediction`, `labels`) and its `performance`: the configured view."""
    basis = thresholds.performance_window
    scores = state.scores
    expected = (scores.total - scores.total_sq) / scores.n if scores.n else None  # E[p(1−p)]
    views = {"outcome": (state.arrived_performance, state.arrived_calibration),
             "prediction": (state.performance, state.calibration)}
    extra: dict[str, object] = {"windowBasis": basis}
    metrics: dict[str, object] = {}
    if baseline is not None:
        rendered = {name: performance_view(baseline, sums, bins, thresholds, name, expected)
                    for name, (sums, bins) in views.items()}
        metrics = rendered[basis]
        extra["performanceViews"] = rendered
    classification = baseline is None or baseline.task == "classification"
    if classification:
        extra["expectedBrier"] = expected
        bins = views[basis][1]
        decomposition = bins.decomposition()
        extra["calibration"] = None if decomposition is None else {
            "windowBasis": basis, "ece": bins.ece(), "eceNullMean": bins.null_mean(),
            **decomposition, "sampleSize": bins.n, "bins": bins.bins_report()}
    if baseline is not None and baseline.prediction is not None:
        counts = np.asarray(state.score_counts or (0,) * baseline.prediction.bins.n_bins, dtype=np.int64)
        verdict = evaluate_feature(baseline.prediction, counts, baseline.sample_size, thresholds, model_id)
        extra["prediction"] = {**feature_entry(verdict, 0), "kind": "prediction"}
    if window_end_ms is not None:
        policy = CoveragePolicy(thresholds.label_coverage_share, thresholds.label_coverage_age_days,
                                thresholds.confidence, thresholds.min_samples)
        labels, coverage = labels_report(
            predictions=scores.n, labelled=state.performance.n, arrived_lags=state.arrived_lags,
            cohorts=state.cohorts, expired_outcomes=state.expired_outcomes,
            window_end_ms=window_end_ms, policy=policy)
        extra["labels"] = labels
        if coverage is not None and baseline is not None:
            metrics = {**metrics, "label_coverage": coverage}
            extra["performanceViews"][basis] = metrics  # type: ignore[index]
    return extra, metrics


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
        "bins": list(verdict.bins),  # read-only: checks with the same counts share these dicts
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
