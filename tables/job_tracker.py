"""The job tracker's bookkeeping over the `job_runs` table, pure: a runs-topic message and the
table (read through a getter) in; the run's new value, the entries to write and the actions out.

Beside each run's own value (constant size, `tables/job_run.py`) the table keeps one entry per
partition report and one per evaluated key, so an `evaluated` message costs O(1), not O(keys).
The shell writes the entries first, performs the actions, then saves the run: a crash in between
repeats idempotent actions, never loses an entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from model_monitoring.tables import job_run as tracker
from model_monitoring.tables.job_run import JobRun
from model_monitoring.tables.keys import EvaluatedKey, ReportKey, RunKey
from model_monitoring.tables.run_messages import KeyEvaluated, PartitionReport, RunMessage, StartRun

Getter = Callable[[bytes], bytes | None]


@dataclass(frozen=True)
class TrackerStep:
    key: RunKey
    run: JobRun | None  # None: a message for a run this tracker does not know (ignored)
    writes: dict[bytes, bytes] = field(default_factory=dict)
    actions: list[tracker.Action] = field(default_factory=list)
    note: str | None = None  # what a log line should say about it, if anything


def stored_reports(get: Getter, partition: int, run: JobRun) -> dict[int, list[str]]:
    """The partitions' reports stored for a run: reporting partition -> its keys."""
    out = {}
    for p in range(run.partitions):
        stored = get(ReportKey(partition, run.job_run_id, p).encode())
        if stored is not None:
            out[p] = list(orjson.loads(stored))
    return out


def track(message: RunMessage, partition: int, get: Getter, now_ms: int) -> TrackerStep:
    """Apply one runs-topic message received on `partition`."""
    key = RunKey(partition, message.job_run_id)
    raw = get(key.encode())
    run = JobRun.from_bytes(raw) if raw is not None else None
    if isinstance(message, StartRun):
        note = f"duplicate trigger for jobRunId={key.job_run_id} ignored ({run.status})" if run else None
        run, actions = tracker.start(run, message.run)
        return TrackerStep(key, run, {}, actions, note)
    if run is None:
        kind = "report" if isinstance(message, PartitionReport) else "evaluated"
        return TrackerStep(key, None, note=f"{kind} for unknown jobRunId={key.job_run_id} ignored")
    writes: dict[bytes, bytes] = {}

    def read(k: bytes) -> bytes | None:
        return writes[k] if k in writes else get(k)

    current = run
    if isinstance(message, PartitionReport):
        report_key = ReportKey(partition, run.job_run_id, message.partition).encode()
        if get(report_key) is None:
            writes[report_key] = orjson.dumps(sorted(message.keys))

        def is_evaluated(model_key: str) -> bool:
            return get(EvaluatedKey(partition, current.job_run_id, model_key).encode()) is not None

        run, actions = tracker.report(run, message.partition, stored_reports(read, partition, run),
                                      is_evaluated, now_ms)
        return TrackerStep(key, run, writes, actions)
    assert isinstance(message, KeyEvaluated)
    done_key = EvaluatedKey(partition, run.job_run_id, message.key).encode()
    first_time = get(done_key) is None
    if first_time:
        writes[done_key] = orjson.dumps(dict(message.counts))
    run, actions = tracker.evaluated(run, message.counts, first_time, now_ms,
                                     lambda: stored_reports(read, partition, current))
    return TrackerStep(key, run, writes, actions)
