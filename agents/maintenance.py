"""Timers that keep state bounded and the gauges current."""

from __future__ import annotations

import logging

from streams.app import Monitor
from tables.expiry import expired_joins, expired_partials, high_water_marks

log = logging.getLogger("model_monitoring.maintenance")


def expire_state(monitor: Monitor) -> tuple[int, int]:
    """Delete expired partials and join entries on this worker's active partitions."""
    s, t, m = monitor.settings, monitor.tables, monitor.metrics
    marks = high_water_marks((k, v) for k, v in t.partials.items() if k.endswith(b"|~meta"))
    old_partials = list(expired_partials(list(t.partials.keys()), marks, s.bucket_ms, s.retention_ms))
    for key in old_partials:
        del t.partials[key]
    old_joins = list(expired_joins(list(t.join_buffer.items()), marks, s.join_ttl_ms))
    for key, state in old_joins:
        del t.join_buffer[key]
        m.join_expired.labels(state).inc()
    m.partials_expired.inc(len(old_partials))
    m.join_buffer_size.set(len(t.join_buffer))
    if old_partials or old_joins:
        log.info("expired %d partials and %d join entries", len(old_partials), len(old_joins))
    return len(old_partials), len(old_joins)


def register(monitor: Monitor) -> None:
    @monitor.app.timer(monitor.settings.maintenance_interval_seconds, name="expire-state")
    async def expire() -> None:
        expire_state(monitor)
