"""From a validated trigger to the frozen plan of a run: its jobRunId, window and tenant scope."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from model_monitoring.schemas.timestamps import parse_timestamp_ms
from model_monitoring.tables.job_run import JobRun

JOB_NAME = "model-monitoring"


def derived_job_run_id(topic: str, partition: int, offset: int) -> str:
    """A trigger without a jobRunId gets one derived from its position in the log, so the same
    message redelivered after a crash names the same run."""
    digest = hashlib.sha256(f"{topic}:{partition}:{offset}".encode()).hexdigest()[:20]
    return f"mm-{digest}"


def cron_fields(cron: str) -> int:
    """How many fields the schedule has: 5 (minute … weekday), or 6 with seconds last (croniter's
    order). Anything else, or a field croniter cannot read, is a ValueError naming the schedule."""
    fields = len(cron.split())
    if fields not in (5, 6) or not croniter.is_valid(cron):
        raise ValueError(f"cron {cron!r} is not a crontab of 5 fields (minute hour day month weekday) "
                         "or 6 (the same, then seconds)")
    return fields


def cron_job_run_id(cron: str, fired_at: datetime) -> str:
    """The jobRunId of the crontab tick that fired at `fired_at` (timezone-aware): the tick is
    the scheduled time nearest to it, whichever way the timer was late or early, so two leaders
    firing the same tick (a rebalance moves the leader) name the same run. Minute resolution
    (`cron-YYYYmmddTHHMM`, UTC) for a 5-field schedule, seconds (`…SS`) when it has a seconds field."""
    second = timedelta(seconds=1)  # croniter's prev and next are strict: a firing on the tick
    ticks: tuple[datetime, datetime] = (
        croniter(cron, fired_at + second).get_prev(datetime),  # is its own nearest tick
        croniter(cron, fired_at - second).get_next(datetime))
    tick = min(ticks, key=lambda t: abs(t - fired_at))
    return "cron-" + tick.astimezone(UTC).strftime("%Y%m%dT%H%M%S" if cron_fields(cron) == 6 else "%Y%m%dT%H%M")


def window_for(window_end_ms: int, window_ms: int, bucket_ms: int) -> tuple[int, int]:
    """[end − window, end), with end rounded down to the bucket size: state is kept in buckets
    (1 day by default), so the window counted — and reported — is whole buckets."""
    end = (window_end_ms // bucket_ms) * bucket_ms
    return end - window_ms, end


def plan_run(trigger: Mapping[str, Any], *, job_run_id: str, now_ms: int, window_ms: int,
             bucket_ms: int, deadline_ms: int, partitions: int, source: str) -> JobRun:
    metadata = trigger.get("metadata") or {}
    end_raw = metadata.get("windowEnd") or trigger.get("triggeredAt")
    window_end = parse_timestamp_ms(end_raw) if end_raw is not None else now_ms
    start, end = window_for(window_end, window_ms, bucket_ms)
    tenants = metadata.get("tenantIds")
    return JobRun(
        job_run_id=job_run_id, window_start_ms=start, window_end_ms=end,
        tenant_ids=tuple(sorted(set(tenants))) if tenants is not None else None,
        source=source, started_ms=now_ms, deadline_ms=now_ms + deadline_ms,
        partitions=partitions)
