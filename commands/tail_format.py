"""How `model-monitoring tail` shows an event: one terminal-safe line, its time first (UTC).

Pure: no I/O. Wire values are untrusted, so every one goes through `clean` before it is printed."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

MAX_DRIFTED_SHOWN = 5


def clean(value: Any, limit: int = 120) -> str:
    """A wire value made safe for one terminal line: control characters escaped, truncated."""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else repr(ch)[1:-1] for ch in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt_num(value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return clean(value, 40)
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def fmt_time(value: Any, fallback_ms: int | None = None) -> str:
    """ISO-8601 UTC to the second, from an ISO string with a zone or epoch milliseconds."""
    moment: datetime | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value / 1000, UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return clean(value, 40)
        if moment.tzinfo is None:
            return clean(value, 40)
    elif fallback_ms is not None:
        moment = datetime.fromtimestamp(fallback_ms / 1000, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def _model(body: Mapping[str, Any]) -> str:
    text = f"{clean(body.get('tenantId'), 60)}:{clean(body.get('modelId'), 60)} v{clean(body.get('modelVersion'), 20)}"
    segment = body.get("segment")
    return text if segment is None else f"{text} segment={clean(segment, 40)}"


def _run(body: Mapping[str, Any]) -> str:
    return f"run={clean(body.get('jobRunId'), 80)}"


def _tenants(tenants: Any) -> str:
    if tenants is None:
        return "all"
    if isinstance(tenants, list):
        return ",".join(clean(t, 40) for t in tenants) if len(tenants) <= 3 else f"{len(tenants)}"
    return clean(tenants, 40)


def _incident(body: Mapping[str, Any]) -> str:
    """` opened incident=…` (the status first: an opened or escalated event pages), or nothing
    for an event without incident fields; a segment list on the overall event."""
    status = body.get("incidentStatus")
    if status is None:
        return ""
    segments = body.get("segments")
    listed = ""
    if isinstance(segments, list) and segments:
        names = [clean(s.get("segment"), 40) for s in segments[:5] if isinstance(s, Mapping)]
        listed = f" segments={','.join(names)}{',…' if len(segments) > 5 else ''}"
    return f"{listed} {clean(status, 20).upper()} incident={clean(body.get('incidentId'), 40)}"


def _as_float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _snapshot_summary(body: Mapping[str, Any]) -> str:
    features = body.get("features")
    if not isinstance(features, Mapping):
        features = {}
    statuses = Counter(str(v.get("status")) for v in features.values() if isinstance(v, Mapping))
    drifted = sorted(((name, v) for name, v in features.items()
                      if isinstance(v, Mapping) and v.get("status") == "drift"),
                     key=lambda item: -_as_float(item[1].get("value")))
    parts = [f"n={fmt_num(body.get('sampleSize'))}",
             "features " + (" ".join(f"{s}={n}" for s, n in sorted(statuses.items())) or "none")]
    if drifted:
        shown = [f"{clean(name, 40)} {fmt_num(v.get('value'))} {clean(v.get('severity'), 10)}"
                 for name, v in drifted[:MAX_DRIFTED_SHOWN]]
        more = f", +{len(drifted) - MAX_DRIFTED_SHOWN} more" if len(drifted) > MAX_DRIFTED_SHOWN else ""
        parts.append(f"[{', '.join(shown)}{more}]")
    performance = body.get("performance")
    if not isinstance(performance, Mapping):
        performance = {}
    for metric, verdict in sorted(performance.items()):
        if isinstance(verdict, Mapping):
            parts.append(f"{clean(metric, 20)}={fmt_num(verdict.get('value'))} {clean(verdict.get('status'), 20)}")
    return " ".join(parts)


def format_event(kind: str, body: Mapping[str, Any], fallback_ms: int | None = None) -> str:
    """One readable line per event, its time first (UTC)."""
    if kind == "drift":
        return (f"{fmt_time(body.get('detectedAt'), fallback_ms)} DRIFT {clean(body.get('severity'), 10)} "
                f"{_model(body)} {clean(body.get('feature'), 60)} {clean(body.get('metric', 'psi'), 10)}="
                f"{fmt_num(body.get('value'))} (≥{fmt_num(body.get('threshold'))}) "
                f"n={fmt_num(body.get('sampleSize'))}{_incident(body)} {_run(body)}")
    if kind == "degraded":
        return (f"{fmt_time(body.get('detectedAt'), fallback_ms)} DEGRADED {_model(body)} "
                f"{clean(body.get('metric'), 10)}={fmt_num(body.get('value'))} "
                f"(>{fmt_num(body.get('threshold'))}, baseline {fmt_num(body.get('baseline'))}) "
                f"n={fmt_num(body.get('sampleSize'))}{_incident(body)} {_run(body)}")
    if kind in ("resolved", "recovered"):
        subject = body.get("feature") if kind == "resolved" else body.get("metric")
        return (f"{fmt_time(body.get('resolvedAt'), fallback_ms)} {kind.upper()} {_model(body)} "
                f"{clean(subject, 60)}={fmt_num(body.get('value'))} (<{fmt_num(body.get('clearThreshold'))} "
                f"or quiet) {clean(body.get('resolution'), 20)} incident={clean(body.get('incidentId'), 40)} "
                f"opened={clean(body.get('openedAt'), 40)} {_run(body)}")
    if kind == "snapshot":
        return (f"{fmt_time(body.get('windowEnd'), fallback_ms)} SNAPSHOT {_model(body)} "
                f"{_snapshot_summary(body)} {_run(body)}")
    if kind == "completed":
        duration = body.get("durationMs")
        took = f"{duration / 1000:.1f}s" if isinstance(duration, (int, float)) else "?"
        return (f"{fmt_time(body.get('completedAt'), fallback_ms)} COMPLETED {_run(body)} "
                f"tenants={_tenants(body.get('tenants'))} driftChecked={fmt_num(body.get('driftChecked'))} "
                f"driftDetected={fmt_num(body.get('driftDetected'))} "
                f"performanceChecked={fmt_num(body.get('performanceChecked'))} "
                f"performanceDegraded={fmt_num(body.get('performanceDegraded'))} duration={took}")
    if kind == "failed":
        return (f"{fmt_time(body.get('failedAt'), fallback_ms)} FAILED {_run(body)} "
                f"error={clean(body.get('error'), 300)}")
    raise ValueError(f"unknown event kind {kind!r}")
