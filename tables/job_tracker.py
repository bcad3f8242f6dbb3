"""The job tracker's bookkeeping over the `job_runs` table, pure: a runs-topic message and the
table (read through a getter) in; the run's new value, the entries to write and the actions out.

Beside each run's own value (constant size, `tables/job_run.py`) the table keeps one entry per
partition report and one per evaluated key, so an `evaluated` message costs O(1), not O(keys).
The shell writes the entries first, performs the actions, then saves the run: a crash in between
repeats idempotent actions, never loses an entry.

Exactly once, after a crash at any point:
- the run remembers the runs-topic offset it folded last (`applied_offset`): a redelivered
  message at or below it changes nothing;
- an evaluated entry remembers the offset of the message that wrote it (a batch message writes
  one entry per key, each with its offset): the same message,
  redelivered because the run was not saved after it, still counts (once); another message for
  the same key (a repeated report) does not;
- the completion (or failure) is not an idempotent action: the run is saved with it in its
  `outbox`, and flushed, before it is sent, and cleared after; a run found with a full outbox
  sends it only if a read-back of the output topic does not find it (`agents/run.py`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import orjson

from model_monitoring.tables import job_run as tracker
from model_monitoring.tables.job_run import JobRun
from model_monitoring.tables.keys import EvaluatedKey, ReportKey, RunKey
from model_monitoring.tables.run_messages import KeysEvaluated, PartitionReport, RunMessage, StartRun

Getter = Callable[[bytes], bytes | None]


@dataclass(frozen=True)
class TrackerStep:
    key: RunKey
    run: JobRun | None  # None: a message for a run this tracker does not know (ignored)
    writes: dict[bytes, bytes] = field(default_factory=dict)
    actions: list[tracker.Action] = field(default_factory=list)
    note: str | None = None  # what a log line should say about it, if anything
    applied: bool = True  # False: a redelivered message this run already folded (nothing to do)


def _written_by(stored: bytes | None, offset: int) -> bool:
    """Does this evaluated entry still need counting: absent, or written by this very message
    (whose run update a crash lost)?"""
    if stored is None:
        return True
    doc = orjson.loads(stored)
    return isinstance(doc, dict) and doc.get("offset") == offset


def with_outbox(run: JobRun, actions: list[tracker.Action], now_ms: int
                ) -> tuple[JobRun, list[tracker.Action], tracker.Complete | tracker.Fail | None]:
    """Split off the run's completion or failure (at most one) and put it in the run's outbox."""
    terminal = [a for a in actions if isinstance(a, tracker.Complete | tracker.Fail)]
    if not terminal:
        return run, actions, None
    action = terminal[0]
    kind = "completed" if isinstance(action, tracker.Complete) else "failed"
    outbox = {"kind": kind, "payload": dict(action.payload), "sinceMs": now_ms}
    rest = [a for a in actions if a is not action]
    return replace(run, outbox=outbox), rest, action


def outbox_action(run: JobRun) -> tracker.Complete | tracker.Fail | None:
    """The completion or failure waiting in a run's outbox, if any."""
    if run.outbox is None:
        return None
    payload = dict(run.outbox["payload"])
    return tracker.Complete(payload) if run.outbox["kind"] == "completed" else tracker.Fail(payload)


def stored_reports(get: Getter, partition: int, run: JobRun) -> dict[int, list[str]]:
    """The partitions' reports stored for a run: reporting partition -> its keys."""
    out = {}
    for p in range(run.partitions):
        stored = get(ReportKey(partition, run.job_run_id, p).encode())
        if stored is not None:
            out[p] = list(orjson.loads(stored))
    return out


def run_summary(run: JobRun, partition: int, get: Getter) -> dict[str, object]:
    """The run's entry in `run_status`: its summary, with the completion's tenants (read off the
    stored reports) once it has completed."""
    completed = run.status == "completed"
    return run.summary(tracker.tenants_of(run, stored_reports(get, partition, run)) if completed else None)


def track(message: RunMessage, partition: int, offset: int, get: Getter, now_ms: int) -> TrackerStep:
    """Apply one runs-topic message received at `offset` of `partition`."""
    key = RunKey(partition, message.job_run_id)
    raw = get(key.encode())
    run = JobRun.from_bytes(raw) if raw is not None else None
    if run is not None and offset <= run.applied_offset:
        return TrackerStep(key, run, note=f"redelivered message at offset {offset} already applied",
                           applied=False)
    step = _track(message, key, run, offset, get, now_ms)
    if step.run is None:
        return step
    return replace(step, run=replace(step.run, applied_offset=offset))


def _track(message: RunMessage, key: RunKey, run: JobRun | None, offset: int, get: Getter,
           now_ms: int) -> TrackerStep:
    partition = key.partition
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
    results = message.each() if isinstance(message, KeysEvaluated) else (message,)
    evaluated_actions: list[tracker.Action] = []
    for result in {r.key: r for r in results}.values():  # a key once per message
        done_key = EvaluatedKey(partition, run.job_run_id, result.key).encode()
        first_time = _written_by(get(done_key), offset)
        if first_time:
            writes[done_key] = orjson.dumps({"counts": dict(result.counts), "offset": offset})
        run, more = tracker.evaluated(run, result.counts, first_time, now_ms,
                                      lambda: stored_reports(read, partition, current))
        evaluated_actions.extend(more)
    return TrackerStep(key, run, writes, evaluated_actions)
