"""Between snapshots, incidents and events: the checks a snapshot holds (what the incident fold
reads), the incident fields an alert event carries, and the resolution events
(`ml.model.drift.resolved`, `ml.model.performance.recovered`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model_monitoring.tables.evaluation_state import event_id
from model_monitoring.tables.incidents import Check, IncidentKey, IncidentPolicy, RunRef, Transition
from model_monitoring.tables.thresholds import Thresholds

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
            psi_lower=verdict.get("psiLower"), sample_size=int(verdict.get("sampleSize") or 0))
    for metric, verdict in (snapshot.get("performance") or {}).items():
        if not verdict:
            continue
        baseline = verdict.get("baseline")
        out[IncidentKey(version, segment, "performance", metric)] = Check(
            breach=verdict.get("status") == "degraded", severity=None, value=verdict.get("value"),
            clear_threshold=None if baseline is None else baseline * (1.0 + thresholds.tolerance / 2.0),
            sample_size=int(verdict.get("sampleSize") or 0))
    return out


def alert_key(kind: str, event: Mapping[str, Any]) -> IncidentKey:
    """The incident a drift or degraded event belongs to."""
    if kind == "drift":
        return IncidentKey(event["modelVersion"], event["segment"], "drift", event["feature"])
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
    if key.kind == "drift":
        doc.update(feature=key.subject, metric="psi", psiLower=check.psi_lower)
    else:
        verdict = (snapshot.get("performance") or {}).get(key.subject) or {}
        doc.update(metric=key.subject, baseline=verdict.get("baseline"))
    doc.update({
        "value": incident.last_value, "clearThreshold": check.clear_threshold,
        "resolution": transition.resolution, "quietRuns": incident.quiet_runs,
        "sampleSize": check.sample_size, "openedAt": incident.opened_at, "resolvedAt": run.detected_at,
        "windowStart": snapshot["windowStart"], "windowEnd": snapshot["windowEnd"],
    })
    return kind, doc
