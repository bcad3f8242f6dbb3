"""From one snapshot to the alert events of the contract: a drift event per feature in `drift`,
a degraded event per metric in `degraded`, each with its stable eventId. The snapshot's checks
have been through false-discovery control already (tables/fdr.py), so `drift` and `degraded`
mean: in breach per check, and discovered in the model version's family of checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model_monitoring.tables.evaluation_state import event_id
from model_monitoring.tables.thresholds import Thresholds

PREDICTION = "prediction"  # the `feature` of a prediction-score drift event
PREDICTION_SUBJECT = "~prediction"  # its incident subject, apart from a feature named "prediction"


def drift_events(snapshot: Mapping[str, Any], *, thresholds: Thresholds,
                 baseline_sample_size: int | None, detected_at: str) -> list[dict[str, Any]]:
    out = []
    tenant, model, version = snapshot["tenantId"], snapshot["modelId"], snapshot["modelVersion"]
    checks = [(name, verdict, "feature") for name, verdict in sorted(snapshot.get("features", {}).items())]
    if isinstance(snapshot.get("prediction"), Mapping):  # the model's own score: kind "prediction"
        checks.append((PREDICTION, snapshot["prediction"], "prediction"))
    for feature, verdict, kind in checks:
        if verdict.get("status") != "drift":
            continue
        warning, critical = thresholds.psi_thresholds(model, feature)
        threshold = critical if verdict["severity"] == "critical" else warning
        out.append({
            "eventId": event_id(snapshot["jobRunId"], tenant, model, version, snapshot["segment"],
                                feature if kind == "feature" else PREDICTION_SUBJECT, "drift"),
            "jobRunId": snapshot["jobRunId"], "tenantId": tenant, "modelId": model,
            "modelVersion": version, "segment": snapshot["segment"], "feature": feature,
            "metric": "psi", "value": verdict["value"], "threshold": threshold,
            "delta": verdict["value"] - threshold, "severity": verdict["severity"],
            "sampleSize": verdict["sampleSize"], "baselineSampleSize": baseline_sample_size,
            "windowStart": snapshot["windowStart"], "windowEnd": snapshot["windowEnd"],
            "detectedAt": detected_at,
            "psiLower": verdict.get("psiLower"), "pValue": verdict.get("pValue"), "qValue": verdict.get("qValue"),
            "kind": kind,
        })
    return out


def degraded_events(snapshot: Mapping[str, Any], *, detected_at: str) -> list[dict[str, Any]]:
    out = []
    tenant, model, version = snapshot["tenantId"], snapshot["modelId"], snapshot["modelVersion"]
    for metric, verdict in sorted((snapshot.get("performance") or {}).items()):
        if not verdict or verdict.get("status") != "degraded":
            continue
        out.append({
            "eventId": event_id(snapshot["jobRunId"], tenant, model, version, snapshot["segment"],
                                metric, "degraded"),
            "jobRunId": snapshot["jobRunId"], "tenantId": tenant, "modelId": model,
            "modelVersion": version, "segment": snapshot["segment"], "metric": metric,
            "value": verdict["value"], "baseline": verdict["baseline"],
            "threshold": verdict["threshold"], "delta": verdict["value"] - verdict["threshold"],
            "sampleSize": verdict["sampleSize"],
            "windowStart": snapshot["windowStart"], "windowEnd": snapshot["windowEnd"],
            "detectedAt": detected_at,
            "pValue": verdict.get("pValue"), "qValue": verdict.get("qValue"),
            **({"windowBasis": verdict["windowBasis"]} if verdict.get("windowBasis") else {}),
        })
    return out


def snapshot_counts(snapshot: Mapping[str, Any]) -> dict[str, int]:
    """What one snapshot adds to the run's counts: PSI evaluations (a baseline was there to
    compare with), metric evaluations, and the alerts among them."""
    features = snapshot.get("features", {}).values()
    metrics = [v for v in (snapshot.get("performance") or {}).values() if v]
    return {
        "driftChecked": sum(1 for v in features if v.get("status") != "no_baseline"),
        "performanceChecked": len(metrics),
        "driftDetected": sum(1 for v in features if v.get("status") == "drift"),
        "performanceDegraded": sum(1 for v in metrics if v.get("status") == "degraded"),
    }
