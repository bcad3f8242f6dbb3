"""Prometheus metrics of one worker (one registry per app, so tests can build several)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from model_monitoring.schemas.rejection import KNOWN_REASONS
from model_monitoring.tables.expiry import JOIN_STATES
from model_monitoring.tables.psi import Severity
from model_monitoring.tables.trigger import JOB_NAME

DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# the `source` of the triggers the service sends itself (the topic's default, the HTTP route, the
# crontab, `model-monitoring trigger`); a trigger message may name another
TRIGGER_SOURCES = ("topic", "http", "cron", "cli")
RUN_STATUSES = ("completed", "failed")
LAG_BUCKETS_S = (60, 3600, 6 * 3600, 86_400, 3 * 86_400, 7 * 86_400, 14 * 86_400,
                 30 * 86_400, 60 * 86_400, 90 * 86_400)


@dataclass
class Metrics:
    cardinality_cap: int = 2000
    input_topics: tuple[str, ...] = ()  # their dead-letter series start at 0 (see below)
    joined_topics: tuple[str, ...] = ()  # the join's inputs: their mispartitioned series too
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.job_duration = Histogram(
            "batch_job_duration_seconds", "Duration of a batch job run, trigger to completion.",
            ["job_name"], buckets=DURATION_BUCKETS, registry=r)
        self.job_triggers = Counter(
            "batch_job_triggers_total", "Batch job triggers received, by source.",
            ["job", "source"], registry=r)
        self.job_runs = Counter(
            "model_monitoring_runs_total", "Weekly runs finished, by outcome.", ["status"], registry=r)
        self.triggers_ignored = Counter(
            "model_monitoring_triggers_ignored_total", "Trigger messages for other jobs.", registry=r)
        self.records = Counter(
            "model_monitoring_records_consumed_total", "Records consumed (envelopes counted per record).",
            ["topic"], registry=r)
        self.dlq = Counter(
            "model_monitoring_dlq_messages_total", "Messages and records sent to a dead-letter topic.",
            ["topic", "reason"], registry=r)
        self.mispartitioned = Counter(
            "model_monitoring_mispartitioned_records_total",
            "Records that arrived on another partition than their predictionId's (murmur2) and were "
            "forwarded to it (through the repartition topic, or folded in place where this worker holds "
            "that partition), by source topic.", ["topic"], registry=r)
        self.folded_in_place = Counter(
            "model_monitoring_folded_in_place_records_total",
            "Mispartitioned records folded into their partition's tables by the worker they arrived at, "
            "which holds that partition too: no trip through the repartition topic, by source topic.",
            ["topic"], registry=r)
        self.ingest_events = Counter(
            "model_monitoring_ingest_events_total",
            "Ingest outcomes: records, duplicate_predictions, duplicate_outcomes, early_outcomes, "
            "matched, redelivered_skipped, baseline_changed.", ["kind"], registry=r)
        self.join_buffer_size = Gauge(
            "model_monitoring_join_buffer_entries", "Join buffer entries on this worker.", registry=r)
        self.join_expired = Counter(
            "model_monitoring_join_expired_total", "Join buffer entries expired by the TTL.",
            ["state"], registry=r)
        self.partials_expired = Counter(
            "model_monitoring_partials_expired_total", "Partials expired by the retention.", registry=r)
        self.label_lag = Histogram(
            "model_monitoring_label_lag_seconds", "Outcome time minus prediction time.",
            buckets=LAG_BUCKETS_S, registry=r)
        self.alerts = Counter(
            "model_monitoring_alerts_published_total",
            "Alerts published: drift and degraded events that open or escalate an incident.",
            ["type", "severity"], registry=r)
        self.incident_updates = Counter(
            "model_monitoring_incident_updates_total",
            "Drift and degraded events of incidents still open (`ongoing`): updates, not alerts.",
            ["type"], registry=r)
        self.incidents_resolved = Counter(
            "model_monitoring_incidents_resolved_total",
            "Incidents resolved (drift) or recovered (degraded).", ["type"], registry=r)
        self.psi = Gauge(
            "model_monitoring_psi", "Last run's PSI (segment null), capped in cardinality.",
            ["tenant", "model", "feature"], registry=r)
        self.metric_value = Gauge(
            "model_monitoring_metric_value", "Last run's performance metric (segment null).",
            ["tenant", "model", "metric"], registry=r)
        self.label_health = Gauge(
            "model_monitoring_label_health",
            "Last run's label health per model version (segment null): coverage (share of the "
            "window's predictions labelled so far), lag_p50_hours, lag_p90_hours, "
            "unmatched_outcomes, and expected_brier (E[p(1-p)] of the window's predictions).",
            ["tenant", "model", "version", "figure"], registry=r)
        self.gauges_dropped = Counter(
            "model_monitoring_gauge_series_dropped_total",
            "Gauge series not exported because of the cardinality cap.", registry=r)
        self.consumer_lag = Gauge(
            "model_monitoring_consumer_lag", "Messages behind the end of each assigned partition.",
            ["topic", "partition"], registry=r)
        self.batch_seconds = Histogram(
            "model_monitoring_batch_seconds", "Time to fold one ingest batch.", ["topic"], registry=r)
        self.detector_late = Counter(
            "model_monitoring_detector_late_events_total",
            "Events of closed minutes that reached a model's continuous detectors after the detectors "
            "had fed that minute (from a partition's log that was idle, or not yet heard from: a "
            "backlog or a replay): counted, not fed to the detectors; the weekly run counts them all.",
            registry=r)
        self._series: set[tuple[str, ...]] = set()
        self._start_known_series_at_zero()

    def _start_known_series_at_zero(self) -> None:
        """Export the series whose label values are known, at 0, from the start. Prometheus's
        increase() and rate() count only changes between scrapes, so a series that first appears
        at 1 adds nothing: a worker's first run since it started (with weekly runs and restarts
        in between, most runs) would be missing from the runs, triggers and alerts panels, and
        "Last run duration" would keep showing an older run."""
        self.job_duration.labels(JOB_NAME)
        for status in RUN_STATUSES:
            self.job_runs.labels(status)
        for source in TRIGGER_SOURCES:
            self.job_triggers.labels(JOB_NAME, source)
        for severity in get_args(Severity):
            self.alerts.labels("drift", severity)
        self.alerts.labels("degraded", "degraded")
        for kind in ("drift", "degraded"):
            self.incident_updates.labels(kind)
            self.incidents_resolved.labels(kind)
        for state in JOIN_STATES:
            self.join_expired.labels(state)
        for topic in self.input_topics:
            for reason in KNOWN_REASONS:
                self.dlq.labels(topic, reason)
        for topic in self.joined_topics:
            self.mispartitioned.labels(topic)
            self.folded_in_place.labels(topic)

    def set_capped(self, gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
        """Set a per-model gauge unless that would exceed the cardinality cap."""
        key = (gauge._name, *labels)  # noqa: SLF001 - the metric name is public in practice
        if key not in self._series:
            if len(self._series) >= self.cardinality_cap:
                self.gauges_dropped.inc()
                return
            self._series.add(key)
        gauge.labels(*labels).set(value)
