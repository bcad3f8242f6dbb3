"""The weekly run's pure steps: one partition's share of the window (`window_parts`), and the
evaluation of one (tenant, model) from the merged parts (`evaluate_key`): snapshots, drift and
degraded events grouped per feature or metric, the incidents they open, update or resolve, and
what was checked. The agents, `check`'s oracle in the benchmarks and the tests all call these;
none copies them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.tables.alert_grouping import group_degraded, group_drift
from model_monitoring.tables.alerts import degraded_events, drift_events, snapshot_counts
from model_monitoring.tables.baseline import Baseline, BaselineLookup
from model_monitoring.tables.evaluation import evaluate_snapshot
from model_monitoring.tables.fdr import with_q_values
from model_monitoring.tables.histogram import FeatureHistogram, counts_array
from model_monitoring.tables.incident_events import alert_key, checks_of, resolution_event, with_incident
from model_monitoring.tables.incidents import Check, IncidentBook, IncidentKey, IncidentPolicy, RunRef, fold
from model_monitoring.tables.job_run import COUNT_FIELDS
from model_monitoring.tables.keys import ArrivalKey, PartialKey, is_arrival_key, is_meta_key, partition_prefix
from model_monitoring.tables.partial import Cohort, PartialState, VersionSegment
from model_monitoring.tables.psi import FeatureVerdicts
from model_monitoring.tables.thresholds import Thresholds

ALERT_STATUSES = ("opened", "escalated")  # an alert pages; an `ongoing` event is an update


def in_window(day: int, bucket_ms: int, start_ms: int, end_ms: int) -> bool:
    """A day bucket counts when it lies wholly inside [start, end)."""
    return day * bucket_ms >= start_ms and (day + 1) * bucket_ms <= end_ms


COHORT_WEEKS = 12  # label health's weekly cohorts of predictions
WEEK_MS = 7 * 86_400_000


def window_parts(items: Iterable[tuple[bytes, bytes]], partition: int, start_ms: int, end_ms: int,
                 bucket_ms: int, tenant_ids: Iterable[str] | None
                 ) -> dict[str, dict[VersionSegment, PartialState]]:
    """One partition's partials for a run: (tenant:model) -> {(version, segment): sum}.

    The sum holds the prediction days inside the window (feature counts, scores, the
    prediction-window view's error sums), the arrival days inside the window (as `arrived_*`:
    the outcome-arrival view), and, for label health, each of the last COHORT_WEEKS weeks of
    prediction days before the window's end as a `Cohort` (week 0 ends at the window's end)."""
    prefix = partition_prefix(partition)
    tenants = set(tenant_ids) if tenant_ids is not None else None
    parts: dict[str, dict[VersionSegment, PartialState]] = defaultdict(dict)

    def add(model_key: str, vs: VersionSegment, state: PartialState) -> None:
        group = parts[model_key]
        group[vs] = group[vs].merge(state) if vs in group else state

    for raw_key, raw_value in items:
        if not raw_key.startswith(prefix) or is_meta_key(raw_key):
            continue
        key = ArrivalKey.decode(raw_key) if is_arrival_key(raw_key) else PartialKey.decode(raw_key)
        if tenants is not None and key.tenant_id not in tenants:
            continue
        vs = (key.model_version, key.segment)
        inside = in_window(key.day, bucket_ms, start_ms, end_ms)
        if isinstance(key, ArrivalKey):
            if inside:
                add(key.model_key, vs, PartialState.from_bytes(raw_value).as_arrived())
            continue
        week = (end_ms - 1 - key.day * bucket_ms) // WEEK_MS
        if not inside and not (0 <= week < COHORT_WEEKS and (key.day + 1) * bucket_ms <= end_ms):
            continue
        state = PartialState.from_bytes(raw_value)
        cohort = {int(week): Cohort(state.scores.n, state.lags)} if 0 <= week < COHORT_WEEKS else {}
        add(key.model_key, vs, replace(state, cohorts=cohort) if inside else PartialState(cohorts=cohort))
    return dict(parts)


def usable_histogram(state: PartialState, fingerprint: str) -> FeatureHistogram:
    """Counts made with the version's current bins only (partials counted before its baseline
    was registered, or under a replaced one, cannot be compared with it)."""
    if state.histogram.fingerprint == fingerprint:
        return state.histogram
    if not fingerprint:  # the baseline was withdrawn: names only
        return FeatureHistogram(counts={n: () for n in state.histogram.counts}, type_mismatch={},
                                n=state.histogram.n, fingerprint="")
    return FeatureHistogram.empty(fingerprint)


@dataclass(frozen=True)
class KeyReport:
    """What one (tenant, model) evaluation publishes, in order (per version: the snapshot of each
    segment view, then its drift events, then its degraded events; then the resolutions), what
    it counts towards the run's totals, and the incident book after the run."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (kind, document)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_FIELDS, 0))
    incidents: IncidentBook = field(default_factory=IncidentBook)
    stale: bool = False  # a run older than the last applied: snapshots only

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """`snapshot`, `drift`, `degraded`, `resolved` or `recovered`."""
        return [doc for k, doc in self.events if k == kind]

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """The drift and degraded events that page: incident opened or escalated."""
        return [(k, doc) for k, doc in self.events if k in ("drift", "degraded")
                and doc.get("incidentStatus") in ALERT_STATUSES]


View = tuple[str | None, PartialState, FeatureHistogram]  # segment, state, its usable histogram


def key_views(model_key: str, merged: Mapping[tuple[str, str | None], PartialState],
              baseline_for: BaselineLookup) -> Iterator[tuple[str, Baseline | None, list[View]]]:
    """Each version of one (tenant, model) with its baseline and its segment views, segment None
    first: what `evaluate_key` evaluates, and `want_verdicts` works out ahead."""
    tenant, model = model_key.split(":", 1)
    versions: dict[str, list[tuple[str | None, PartialState]]] = defaultdict(list)
    for (version, segment), state in sorted(merged.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        versions[version].append((segment, state))
    for version, segments in versions.items():
        baseline = baseline_for(tenant, model, version)
        views: list[View] = []
        for segment, state in segments:
            histogram = usable_histogram(state, baseline.fingerprint() if baseline else "")
            if histogram is not state.histogram:  # score counts go with the feature counts
                state = replace(state, score_counts=())
            views.append((segment, state, histogram))
        yield version, baseline, views


def want_verdicts(model_key: str, merged: Mapping[tuple[str, str | None], PartialState],
                  baseline_for: BaselineLookup, verdicts: FeatureVerdicts) -> None:
    """Every feature check `evaluate_key` will make of this key, wanted from `verdicts`, so that
    a batch of keys is checked in one numpy pass per feature baseline."""
    model = model_key.split(":", 1)[1]
    for _, baseline, views in key_views(model_key, merged, baseline_for):
        if baseline is None:
            continue
        for _, _, histogram in views:
            if histogram.fingerprint not in ("", baseline.fingerprint()):
                continue  # evaluate_snapshot refuses it
            for name, feature in baseline.features.items():
                counts = histogram.counts.get(name)
                if counts and len(counts) != feature.bins.n_bins:
                    continue  # counts_array refuses it
                verdicts.want(feature, counts_array(histogram, name, feature.bins.n_bins),
                              baseline.sample_size, model)


def evaluate_key(model_key: str, merged: Mapping[tuple[str, str | None], PartialState], *,
                 baseline_for: BaselineLookup, thresholds: Thresholds, job_run_id: str,
                 window_start_ms: int, window_end_ms: int, detected_at: str,
                 incidents: IncidentBook | None = None, policy: IncidentPolicy | None = None,
                 verdicts: FeatureVerdicts | None = None) -> KeyReport:
    """Evaluate each (version, segment) of one (tenant, model), segment None first per version,
    and carry its incidents (`incidents`: the book before the run) through the run.

    All segment views of one version are evaluated before any of its events: they form one
    family for false-discovery control (tables/fdr.py), which decides which checks alert, and
    the events are grouped per feature or metric over them (tables/alert_grouping.py)."""
    tenant, model = model_key.split(":", 1)
    policy = policy or IncidentPolicy()
    book = incidents or IncidentBook()
    events: list[tuple[str, dict[str, Any]]] = []
    counts = dict.fromkeys(COUNT_FIELDS, 0)
    snapshot_of: dict[tuple[str, str | None], dict[str, Any]] = {}
    checks: dict[IncidentKey, Check] = {}
    alerts: list[tuple[str, dict[str, Any]]] = []
    for version, baseline, views in key_views(model_key, merged, baseline_for):
        snapshots = [evaluate_snapshot(
            baseline=baseline, histogram=histogram, performance=state.performance,
            thresholds=thresholds, tenant_id=tenant, model_id=model, model_version=version,
            segment=segment, window_start=format_timestamp(window_start_ms),
            window_end=format_timestamp(window_end_ms), job_run_id=job_run_id,
            feature_names=list(histogram.counts), state=state, window_end_ms=window_end_ms,
            verdicts=verdicts) for segment, state, histogram in views]
        drift: list[dict[str, Any]] = []
        degraded: list[dict[str, Any]] = []
        for snap in with_q_values(snapshots, thresholds):
            events.append(("snapshot", snap))
            snapshot_of[(version, snap["segment"])] = snap
            checks.update(checks_of(snap, thresholds, policy))
            drift += drift_events(snap, thresholds=thresholds, detected_at=detected_at,
                                  baseline_sample_size=baseline.sample_size if baseline else None)
            degraded += degraded_events(snap, detected_at=detected_at)
            for name, n in snapshot_counts(snap).items():
                counts[name] += n
        alerts += [("drift", e) for e in group_drift(drift)]
        alerts += [("degraded", e) for e in group_degraded(degraded)]
    run = RunRef(model_key, job_run_id, window_end_ms, detected_at)
    if book.is_stale(run):
        return KeyReport(events, counts, book, stale=True)
    book, transitions = fold(book, run, checks, policy)
    by_key = {t.key: t for t in transitions}
    for kind, doc in alerts:
        events.append((kind, with_incident(doc, by_key[alert_key(kind, doc)])))
    for t in transitions:
        if t.status == "resolved":
            events.append(resolution_event(t, run, snapshot_of[(t.key.version, t.key.segment)]))
    return KeyReport(events, counts, book)
