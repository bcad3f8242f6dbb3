"""Incidents: one open problem per (version, segment, drift or performance, feature or metric)
of a (tenant, model), carried from run to run, so that a problem alerts once, updates while it
lasts, and says when it has gone (table `incidents`, one value per (partition, tenant:model)).

`fold(book, run, checks, policy) -> (book, transitions)` is pure. Per check of the run:

- in breach (status `drift` / `degraded`), no incident: `opened` (id derived from the key and
  the opening jobRunId); a segment whose overall check of the same feature or metric is in
  breach too opens nothing: the overall event lists it (tables/alert_grouping.py);
- in breach, incident open: `escalated` when the drift's severity rises above the highest it
  has reached, else `ongoing`; a covered segment's incident is updated silently;
- not in breach, incident open: `resolved` when the value clears (the plug-in value, or its lower
  confidence bound, below the clear threshold), or when this is the `resolve_after_runs`-th
  consecutive run not in breach. Until then the incident stays open and publishes nothing (no
  check in breach, no event on the detected topics): it only counts the quiet run.
  `insufficient_data` is "not in breach" too.

A check absent from the run (no data for that version or segment this week) is not evaluated:
its incident does not move. Only opened and escalated transitions are alerts.

Exactly once across crashes: the book remembers the run it applied last and the open incidents
before it. The same run applied again (redelivery after a crash, before or after the book was
written) starts from that before-state, so it yields the same transitions, hence the same
events and eventIds. A run older than the last applied (an earlier jobRunId, or a window that
ends before its window) is stale: it changes nothing and publishes no incident event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import orjson

from model_monitoring.tables.evaluation_state import event_id

IncidentKind = Literal["drift", "performance"]
TransitionStatus = Literal["opened", "ongoing", "escalated", "resolved"]
Resolution = Literal["cleared", "quiet_runs"]
SEVERITY_RANK = {None: 0, "warning": 1, "critical": 2}
REMEMBERED_RUNS = 16  # earlier applied runs remembered to recognise a late redelivery


@dataclass(frozen=True, order=True)
class IncidentKey:
    """What one incident is about, inside one (tenant, model)."""

    version: str
    segment: str | None
    kind: IncidentKind
    subject: str  # the feature (drift) or the metric (performance)

    @property
    def overall(self) -> IncidentKey:
        return replace(self, segment=None)

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.version, self.segment or "", self.kind, self.subject)


@dataclass(frozen=True)
class Check:
    """One check of a run as the incident fold sees it: from a snapshot's verdict."""

    breach: bool
    severity: str | None
    value: float | None
    clear_threshold: float | None
    lower: float | None = None  # the value's lower confidence bound: psiLower, or the metric's
    sample_size: int = 0
    below: bool = False  # a check in breach when low (label_coverage): it clears above the threshold

    def clears(self) -> bool:
        """The value, or its lower confidence bound, below the clear threshold (above it, for a
        check in breach when low)."""
        if self.clear_threshold is None or self.value is None:
            return False
        if self.below:
            return self.value > self.clear_threshold
        return self.value < self.clear_threshold or (self.lower is not None and self.lower < self.clear_threshold)


@dataclass(frozen=True)
class RunRef:
    """The run being applied: its id, window end (for ordering) and evaluation time."""

    model_key: str
    job_run_id: str
    window_end_ms: int
    detected_at: str


@dataclass(frozen=True)
class Incident:
    incident_id: str
    opened_at: str
    opened_run: str
    severity: str | None  # the highest reached (drift); None for performance
    last_value: float | None
    last_run: str
    quiet_runs: int = 0  # consecutive runs not in breach

    def to_json(self) -> list[object]:
        return [self.incident_id, self.opened_at, self.opened_run, self.severity,
                self.last_value, self.last_run, self.quiet_runs]

    @classmethod
    def from_json(cls, doc: list[object]) -> Incident:
        incident_id, opened_at, opened_run, severity, last_value, last_run, quiet = doc
        return cls(str(incident_id), str(opened_at), str(opened_run),
                   None if severity is None else str(severity),
                   None if last_value is None else float(last_value),  # type: ignore[arg-type]
                   str(last_run), int(quiet))  # type: ignore[call-overload]


@dataclass(frozen=True)
class Transition:
    """What a run did to one incident; `incident` is its state after (for `resolved`: as it
    closed, with the last value)."""

    key: IncidentKey
    status: TransitionStatus
    incident: Incident
    check: Check
    resolution: Resolution | None = None

    @property
    def is_alert(self) -> bool:
        return self.status in ("opened", "escalated")


@dataclass(frozen=True)
class IncidentPolicy:
    """How incidents resolve: `psi_clear` × the warning threshold is the drift's clear level;
    performance clears below baseline × (1 + tolerance/2); either resolves after
    `resolve_after_runs` consecutive runs not in breach."""

    psi_clear: float = 0.8
    resolve_after_runs: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.psi_clear <= 1.0:
            raise ValueError(f"psi_clear must be in (0, 1], got {self.psi_clear!r}")
        if self.resolve_after_runs < 1:
            raise ValueError(f"resolve_after_runs must be >= 1, got {self.resolve_after_runs!r}")


OpenIncidents = Mapping[IncidentKey, Incident]


@dataclass(frozen=True)
class IncidentBook:
    """The value of one (partition, tenant:model) in the `incidents` table."""

    open: OpenIncidents = field(default_factory=dict)
    last_run: str | None = None
    last_window_end_ms: int | None = None
    before: OpenIncidents = field(default_factory=dict)  # open incidents before last_run
    earlier_runs: tuple[str, ...] = ()  # runs applied before last_run, newest last

    def is_stale(self, run: RunRef) -> bool:
        """A run older than the last applied one: changes nothing."""
        if run.job_run_id == self.last_run:
            return False
        if run.job_run_id in self.earlier_runs:
            return True
        return self.last_window_end_ms is not None and run.window_end_ms < self.last_window_end_ms

    def to_bytes(self) -> bytes:
        return orjson.dumps({"open": _encode(self.open), "lastRun": self.last_run,
                             "lastWindowEndMs": self.last_window_end_ms,
                             "before": _encode(self.before), "earlierRuns": list(self.earlier_runs)})

    @classmethod
    def from_bytes(cls, raw: bytes) -> IncidentBook:
        doc = orjson.loads(raw)
        return cls(_decode(doc["open"]), doc["lastRun"], doc["lastWindowEndMs"],
                   _decode(doc["before"]), tuple(doc["earlierRuns"]))


def _encode(incidents: OpenIncidents) -> list[list[object]]:
    return [[k.version, k.segment, k.kind, k.subject, incidents[k].to_json()]
            for k in sorted(incidents, key=IncidentKey.sort_key)]


def _decode(rows: list[list[object]]) -> dict[IncidentKey, Incident]:
    out = {}
    for version, segment, kind, subject, value in rows:
        if kind not in ("drift", "performance"):
            raise ValueError(f"unknown incident kind {kind!r}")
        key = IncidentKey(str(version), None if segment is None else str(segment), kind, str(subject))
        out[key] = Incident.from_json(value)  # type: ignore[arg-type]
    return out


def incident_id(run: RunRef, key: IncidentKey) -> str:
    """Stable: the same key opened by the same run has the same id, however often replayed."""
    tenant, model = run.model_key.split(":", 1)
    return event_id(run.job_run_id, tenant, model, key.version, key.segment, key.subject,
                    f"incident:{key.kind}")


def fold(book: IncidentBook, run: RunRef, checks: Mapping[IncidentKey, Check],
         policy: IncidentPolicy) -> tuple[IncidentBook, list[Transition]]:
    """Apply one run's checks to the book (see the module's docstring for the rules)."""
    if book.is_stale(run):
        return book, []
    replay = run.job_run_id == book.last_run
    start = book.before if replay else book.open
    incidents = dict(start)
    transitions: list[Transition] = []
    for key in sorted(checks, key=IncidentKey.sort_key):
        check = checks[key]
        current = incidents.get(key)
        overall = checks.get(key.overall)
        covered = key.segment is not None and overall is not None and overall.breach
        if check.breach:
            if current is None:
                if covered:
                    continue
                current = Incident(incident_id(run, key), run.detected_at, run.job_run_id,
                                   check.severity, check.value, run.job_run_id)
                incidents[key] = current
                transitions.append(Transition(key, "opened", current, check))
                continue
            rises = SEVERITY_RANK.get(check.severity, 0) > SEVERITY_RANK.get(current.severity, 0)
            current = replace(current, severity=check.severity if rises else current.severity,
                              last_value=check.value, last_run=run.job_run_id, quiet_runs=0)
            incidents[key] = current
            if not covered:
                transitions.append(Transition(key, "escalated" if rises else "ongoing", current, check))
        elif current is not None:
            quiet = current.quiet_runs + 1
            current = replace(current, last_value=check.value if check.value is not None else current.last_value,
                              last_run=run.job_run_id, quiet_runs=quiet)
            if check.clears() or quiet >= policy.resolve_after_runs:
                del incidents[key]
                transitions.append(Transition(key, "resolved", current, check,
                                              "cleared" if check.clears() else "quiet_runs"))
            else:
                incidents[key] = current
    earlier = book.earlier_runs
    if not replay and book.last_run is not None:
        earlier = (*earlier, book.last_run)[-REMEMBERED_RUNS:]
    return IncidentBook(incidents, run.job_run_id, run.window_end_ms, dict(start), earlier), transitions
