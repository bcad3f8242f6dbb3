"""Between snapshots, incidents and events: the checks a snapshot holds (what the incident fold
reads), the incident fields an alert event carries, and the resolution events
(`ml.model.drift.resolved`, `ml.model.performance.recovered`).

A check clears below its clear threshold (drift: psi_clear × warning; performance: baseline ×
(1 + tolerance/2)) by its plug-in value or by its lower 95% confidence bound: psiLower for a
drift, value − z·SE for a metric. The bound is there for the same reason for both: the clear
margin is small next to a week's sampling noise (a Brier of 0.11 on 2,400 outcomes has a
standard error of about 0.006, more than the 5% margin), so a model that has recovered would
often not clear on its plug-in value alone and would wait for resolve-after-runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model_monitoring.tables.alerts import PREDICTION, PREDICTION_SUBJECT
from model_monitoring.tables.evaluation_state import event_id
from model_monitoring.tables.incidents import Check, IncidentKey, IncidentPolicy, RunRef, Transition
from model_monitoring.tables.thresholds import Thresholds, z_quantile

EVALUATED_FEATURE = ("ok", "drift", "insufficient_data")  # `no_baseline` is no check at all


def checks_of(snapshot: Mapping[str, Any], thresholds: Thresholds,
              policy: IncidentPolicy) -> dict[IncidentKey, Check]:
    """Every drift and performance check of one snapshot, with the value it clears below."""
    version, segment, model = snapshot["modelVersion"], snapshot["segment"], snapshot["modelId"]
    out: dict[IncidentKey, Check] = {}
    for feature, verdict in (snapshot.get("features") or {}).items():
        if not verdict or verdict.get("status") not in EVALUATED_FEATURE:
            continue
        warning, _ = thresholds.psi_thresholds(model, feature)
        out[IncidentKey(version, segment, "drift", feature)] = Check(
            breach=verdict["status"] == "drift", severity=verdict.get("severity"),
            value=verdict.get("value"), clear_threshold=policy.psi_clear * warning,
            lower=verdict.get("psiLower"), sample_size=int(verdict.get("sampleSize") or 0))
    score = snapshot.get("prediction")
    if isinstance(score, Mapping) and score.get("status") in EVALUATED_FEATURE:
        warning, _ = thresholds.psi_thresholds(model, PREDICTION)
        out[IncidentKey(version, segment, "drift", PREDICTION_SUBJECT)] = Check(
            breach=score["status"] == "drift", severity=score.get("severity"),
            value=score.get("value"), clear_threshold=policy.psi_clear * warning,
            lower=score.get("psiLower"), sample_size=int(score.get("sampleSize") or 0))
    for metric, verdict in (snapshot.get("performance") or {}).items():
        if not verdict:
            continue
        baseline = verdict.get("baseline")
        clear = verdict.get("clearThreshold")  # ece and label_coverage say their own
        if clear is None and baseline is not None:
            clear = baseline * (1.0 + thresholds.tolerance / 2.0)
        below = verdict.get("direction") == "below"  # label_coverage: low is bad
        out[IncidentKey(version, segment, "performance", metric)] = Check(
            breach=verdict.get("status") == "degraded", severity=None, value=verdict.get("value"),
            clear_threshold=clear,
            lower=None if below else metric_lower_bound(verdict, thresholds.confidence),
            sample_size=int(verdict.get("sampleSize") or 0), below=below)
    return out


def metric_lower_bound(verdict: Mapping[str, Any], confidence: float) -> float | None:
    """The one-sided lower confidence bound of a metric's true value, value − z·SE, with the
    standard error the degraded test used (z = (value − threshold)/SE in the snapshot). None
    when it cannot be told (no test, or the value exactly at the threshold); the value itself
    when the errors have no spread (SE = 0: the mean is exact)."""
    value, threshold = verdict.get("value"), verdict.get("threshold")
    if value is None or threshold is None or verdict.get("status") == "insufficient_data":
        return None
    z = verdict.get("z")
    if z is None:
        return float(value)
    if z == 0:
        return None
    return float(value - z_quantile(confidence) * (value - threshold) / z)




def alert_key(kind: str, event: Mapping[str, Any]) -> IncidentKey:
    """The incident a drift or degraded event belongs to."""
    if kind == "drift":
        subject = PREDICTION_SUBJECT if event.get("kind") == "prediction" else event["feature"]
        return IncidentKey(event["modelVersion"], event["segment"], "drift", subject)
    return IncidentKey(event["modelVersion"], event["segment"], "performance", event["metric"])


def with_incident(event: Mapping[str, Any], transition: Transition) -> dict[str, Any]:
    """The alert event with its incident: id, status (`opened`, `ongoing`, `escalated`), opening time."""
    return {**event, "incidentId": transition.incident.incident_id,
            "incidentStatus": transition.status, "openedAt": transition.incident.opened_at}


def resolution_event(transition: Transition, run: RunRef, snapshot: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """("resolved" | "recovered", the event) of one resolved incident."""
    key, incident, check = transition.key, transition.incident, transition.check
    tenant, model = run.model_key.split(":", 1)
    kind = "resolved" if key.kind == "drift" else "recovered"
    doc: dict[str, Any] = {
        "eventId": event_id(run.job_run_id, tenant, model, key.version, key.segment, key.subject, kind),
        "incidentId": incident.incident_id, "jobRunId": run.job_run_id, "tenantId": tenant,
        "modelId": model, "modelVersion": key.version, "segment": key.segment,
    }
    if key.kind == "drift" and key.subject == PREDICTION_SUBJECT:
        doc.update(feature=PREDICTION, kind="prediction", metric="psi", psiLower=check.lower)
    elif key.kind == "drift":
        doc.update(feature=key.subject, metric="psi", psiLower=check.lower)
    else:
        verdict = (snapshot.get("performance") or {}).get(key.subject) or {}
        doc.update(metric=key.subject, baseline=verdict.get("baseline"), valueLower=check.lower)
    doc.update({
        "value": incident.last_value, "clearThreshold": check.clear_threshold,
        "resolution": transition.resolution, "quietRuns": incident.quiet_runs,
        "sampleSize": check.sample_size, "openedAt": incident.opened_at, "resolvedAt": run.detected_at,
        "windowStart": snapshot["windowStart"], "windowEnd": snapshot["windowEnd"],
    })
    return kind, doc
