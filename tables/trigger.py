"""From a validated trigger to the frozen plan of a run: its jobRunId, window and tenant scope."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from model_monitoring.schemas.timestamps import parse_timestamp_ms
from model_monitoring.tables.job_run import JobRun

JOB_NAME = "model-monitoring"


def derived_job_run_id(topic: str, partition: int, offset: int) -> str:
    """A trigger without a jobRunId gets one derived from its position in the log, so the same
    message redelivered after a crash names the same run."""
    digest = hashlib.sha256(f"{topic}:{partition}:{offset}".encode()).hexdigest()[:20]
    return f"mm-{digest}"


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
