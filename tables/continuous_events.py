"""A confirmed continuous change as an event, joined to the incidents of the weekly check.

`publish(book, model_key, change, baseline_sample_size) -> (book, kind, doc)` is pure. The
change's incident key is the weekly check's: (version, overall, drift, feature — or
"prediction" for the score's mean) or (version, overall, performance, brier/mae). An incident
already open is joined: the event is `ongoing` and pages nobody. Otherwise it opens one
(`opened`, an alert; a drift at severity `critical`, so that the weekly run in breach finds
nothing to escalate), entered in the book's open incidents and in the before-state of its last
run, so that the next weekly run in breach finds it and reports it `ongoing`, and a replay of
the last run keeps it. Every field comes from the change (event time), so a replay of the same
buckets yields the same event, eventId included."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.tables.continuous_detection import ConfirmedChange
from model_monitoring.tables.evaluation_state import event_id
from model_monitoring.tables.incidents import Incident, IncidentBook, IncidentKey


def incident_key(change: ConfirmedChange) -> IncidentKey:
    if change.is_performance:
        return IncidentKey(change.version, None, "performance", change.metric)
    return IncidentKey(change.version, None, "drift", change.subject)


def publish(book: IncidentBook, model_key: str, change: ConfirmedChange,
            baseline_sample_size: int) -> tuple[IncidentBook, str, dict[str, Any]]:
    """The book with the change's incident opened or joined, the topic kind and the event."""
    tenant, model = model_key.split(":", 1)
    key = incident_key(change)
    change_at = format_timestamp(change.change_at_ms)
    detected_at = format_timestamp(change.confirmed_at_ms)
    tag = f"continuous:{change.detector}:{change.metric}:{change.change_at_ms}"
    current = book.open.get(key)
    if current is not None:
        status = "ongoing"
        incident = replace(current, last_value=change.value)
    else:
        status = "opened"
        incident = Incident(event_id(tag, tenant, model, key.version, None, key.subject, f"incident:{key.kind}"),
                            detected_at, tag, "critical" if key.kind == "drift" else None,
                            change.value, book.last_run or tag)
    before = dict(book.before)
    if book.last_run is not None and key not in before:
        before[key] = incident
    book = replace(book, open={**book.open, key: incident}, before=before)
    common: dict[str, Any] = {
        "eventId": event_id(tag, tenant, model, change.version, None, change.subject, "continuous"),
        "jobRunId": None, "tenantId": tenant, "modelId": model, "modelVersion": change.version,
        "segment": None, "value": change.value, "threshold": change.threshold,
        "delta": change.value - change.threshold, "sampleSize": change.sample_size,
        "windowStart": change_at, "windowEnd": detected_at, "detectedAt": detected_at,
        "pValue": min(1.0, max(0.0, change.p_value)), "detector": change.detector,
        "changeAt": change_at, "incidentId": incident.incident_id, "incidentStatus": status,
        "openedAt": incident.opened_at,
    }
    if change.is_performance:
        return book, "degraded", {**common, "metric": change.metric, "baseline": change.reference}
    kind = "prediction" if change.metric == "prediction_mean" else "feature"
    return book, "drift", {**common, "feature": change.subject, "metric": change.metric,
                           "severity": "critical", "baselineSampleSize": max(1, baseline_sample_size),
                           "kind": kind}
