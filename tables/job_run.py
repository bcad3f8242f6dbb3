"""The job tracker of one weekly run (table `job_runs`, key b"p|jobRunId").

A run goes: started (window and tenant scope frozen, snapshot requests fanned out to every
partition) -> every partition has reported the (tenant, model) keys it holds -> every key has
been evaluated -> completed; or failed when the deadline passes first. `step` is pure: the
state and a message in, the new state and the actions to perform out. Every action is
idempotent downstream, so a message redelivered after a crash may repeat them safely."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

COUNT_FIELDS = ("driftChecked", "performanceChecked", "driftDetected", "performanceDegraded")


@dataclass(frozen=True)
class FanOut:
    """Send one snapshot request to each partition."""


@dataclass(frozen=True)
class Evaluate:
    """Ask the evaluator of each key to evaluate once it holds the parts of these partitions."""

    keys: Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class Complete:
    payload: Mapping[str, object]


@dataclass(frozen=True)
class Fail:
    payload: Mapping[str, object]


Action = FanOut | Evaluate | Complete | Fail


@dataclass(frozen=True)
class JobRun:
    """The run's own value: small and of constant size, whatever the number of keys. Each
    partition's report and each key's evaluation are separate table entries (see `agents/run.py`),
    so an `evaluated` message costs O(1), not O(keys)."""

    job_run_id: str
    window_start_ms: int
    window_end_ms: int
    tenant_ids: tuple[str, ...] | None
    source: str
    started_ms: int
    deadline_ms: int
    partitions: int
    status: str = "running"  # running | completed | failed
    reported: tuple[int, ...] = ()
    key_count: int | None = None  # known once every partition has reported
    evaluated: int = 0
    totals: Mapping[str, int] = field(default_factory=lambda: {f: 0 for f in COUNT_FIELDS})
    finished_ms: int | None = None
    error: str | None = None
    applied_offset: int = -1  # the last runs-topic message folded into this value
    # the completion or failure decided but not yet known to be published: {"kind", "payload",
    # "sinceMs"}, saved (and flushed) before it is sent, cleared after (`agents/run.py`)
    outbox: Mapping[str, Any] | None = None

    def all_reported(self) -> bool:
        return len(self.reported) >= self.partitions

    def summary(self, tenants: Sequence[str] | None = None) -> dict[str, object]:
        """The run as the status route shows it (and the run route answers from it), with the
        completion's `tenants` (`tenants_of`; not kept in this value, whose size must not grow
        with them). A run whose completion or failure still sits in its outbox reads `running`:
        `completed` means the `workflow.job.completed` event is out."""
        status = self.status if self.outbox is None else "running"
        return {"jobRunId": self.job_run_id, "status": status, "source": self.source,
                "windowStartMs": self.window_start_ms, "windowEndMs": self.window_end_ms,
                "tenantIds": list(self.tenant_ids) if self.tenant_ids is not None else None,
                "tenants": list(tenants) if tenants is not None else None,
                "partitionsReported": len(self.reported), "partitions": self.partitions,
                "keys": self.key_count, "keysEvaluated": self.evaluated, **self.totals,
                "startedMs": self.started_ms, "finishedMs": self.finished_ms, "error": self.error}

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def from_bytes(cls, raw: bytes) -> JobRun:
        doc = orjson.loads(raw)
        for name in ("tenant_ids", "reported"):
            if doc.get(name) is not None:
                doc[name] = tuple(doc[name])
        return cls(**doc)


def keys_of(reports: Mapping[int, Sequence[str]]) -> dict[str, tuple[int, ...]]:
    """(tenant:model) -> the partitions that hold data for it."""
    out: dict[str, list[int]] = {}
    for partition, keys in sorted(reports.items()):
        for key in keys:
            out.setdefault(key, []).append(partition)
    return {k: tuple(v) for k, v in out.items()}


def start(run: JobRun | None, new: JobRun) -> tuple[JobRun, list[Action]]:
    """A start message. A known jobRunId starts nothing new: a duplicate trigger, or the HTTP
    caller's retry with the same Idempotency-Key (the same jobRunId) keeps the first start's
    window, tenants and deadline, and can never complete the run twice. While no partition has
    reported, the fan-out is repeated in case the first one was lost in a crash (it is
    idempotent downstream)."""
    if run is None:
        return new, [FanOut()]
    if run.status == "running" and not run.reported:
        return run, [FanOut()]
    return run, []


def report(run: JobRun, partition: int, reports: Mapping[int, Sequence[str]],
           is_evaluated: Callable[[str], bool], now_ms: int) -> tuple[JobRun, list[Action]]:
    """A partition's report. `reports` holds every report stored so far (this one included)."""
    if run.status != "running":
        return run, []
    if partition not in run.reported:
        run = replace(run, reported=tuple(sorted((*run.reported, partition))))
    if not run.all_reported():
        return run, []
    keys = keys_of(reports)
    if run.key_count is None:
        run = replace(run, key_count=len(keys))
    pending = {k: p for k, p in keys.items() if not is_evaluated(k)}
    if not pending:
        return _complete(run, now_ms, reports)
    return run, [Evaluate(pending)]


def evaluated(run: JobRun, counts: Mapping[str, int], first_time: bool, now_ms: int,
              reports: Callable[[], Mapping[int, Sequence[str]]]) -> tuple[JobRun, list[Action]]:
    """A key's evaluation; `first_time` is False for a repeated report of the same key.
    `reports` is only called on completion (the tenants of the run are read off them)."""
    if run.status != "running":
        return run, []
    if first_time:
        totals = {f: run.totals.get(f, 0) + int(counts.get(f, 0)) for f in COUNT_FIELDS}
        run = replace(run, evaluated=run.evaluated + 1, totals=totals)
    if run.key_count is not None and run.evaluated >= run.key_count:
        return _complete(run, now_ms, reports())
    return run, []


def check_deadline(run: JobRun, now_ms: int) -> tuple[JobRun, list[Action]]:
    if run.status != "running" or now_ms < run.deadline_ms:
        return run, []
    error = (f"deadline of {(run.deadline_ms - run.started_ms) / 1000:.0f}s passed: "
             f"{len(run.reported)}/{run.partitions} partitions reported, "
             f"{run.evaluated}/{run.key_count if run.key_count is not None else '?'} keys evaluated")
    run = replace(run, status="failed", finished_ms=now_ms, error=error)
    return run, [Fail({"job": "model-monitoring", "jobRunId": run.job_run_id, "error": error,
                       "failedAtMs": now_ms})]


def tenants_of(run: JobRun, reports: Mapping[int, Sequence[str]]) -> list[str]:
    """The tenants a run covered: those asked for, or those it found data for."""
    if run.tenant_ids is not None:
        return sorted(run.tenant_ids)
    return sorted({k.split(":", 1)[0] for keys in reports.values() for k in keys})


def _complete(run: JobRun, now_ms: int, reports: Mapping[int, Sequence[str]]
              ) -> tuple[JobRun, list[Action]]:
    now_ms = max(now_ms, run.started_ms)
    run = replace(run, status="completed", finished_ms=now_ms)
    payload = {"job": "model-monitoring", "jobRunId": run.job_run_id,
               "tenants": tenants_of(run, reports), **run.totals,
               "durationMs": now_ms - run.started_ms, "completedAtMs": now_ms}
    return run, [Complete(payload)]
