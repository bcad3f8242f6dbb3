"""One event per feature (drift) or metric (performance) of a model version in a run, not one
per segment: the overall event (`segment: null`) lists under `segments` the segments that are in
breach too; a segment gets an event of its own only when the overall check of that feature or
metric is not in breach. brier and mae stay separate events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Event = dict[str, Any]


def drift_segment(event: Event) -> dict[str, Any]:
    """A segment's entry in the overall drift event's `segments`."""
    return {"segment": event["segment"], "value": event["value"], "psiLower": event.get("psiLower"),
            "severity": event["severity"], "sampleSize": event["sampleSize"]}


def degraded_segment(event: Event) -> dict[str, Any]:
    """A segment's entry in the overall degraded event's `segments`."""
    return {"segment": event["segment"], "value": event["value"], "threshold": event["threshold"],
            "sampleSize": event["sampleSize"]}


def group(events: Sequence[Event], subject: str, entry: Callable[[Event], dict[str, Any]]) -> list[Event]:
    """The events of one model version in one run (every segment view's), grouped by `subject`
    (`feature` or `metric`): each overall event with its segments, then the segment events whose
    overall check is not in breach, in the order given."""
    overall = {e[subject] for e in events if e["segment"] is None}
    out: list[Event] = []
    for event in events:
        if event["segment"] is None:
            listed = [entry(e) for e in events
                      if e["segment"] is not None and e[subject] == event[subject]]
            out.append({**event, "segments": sorted(listed, key=lambda s: s["segment"])})
    out += [e for e in events if e["segment"] is not None and e[subject] not in overall]
    return out


def group_drift(events: Sequence[Event]) -> list[Event]:
    return group(events, "feature", drift_segment)


def group_degraded(events: Sequence[Event]) -> list[Event]:
    return group(events, "metric", degraded_segment)
