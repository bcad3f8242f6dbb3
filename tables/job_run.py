"""The job tracker of one weekly run (table `job_runs`, key b"p|jobRunId").

A run goes: started (window and tenant scope frozen, snapshot requests fanned out to every
partition) -> every partition has reported the (tenant, model) keys it holds -> every key has
been evaluated -> completed; or failed when the deadline passes first. `step` is pure: the
state and a message in, the new state and the actions to perform out. Every action is
idempotent downstream, so a message redelivered after a crash may repeat them safely."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

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
    job_run_id: str
    window_start_ms: int
    window_end_ms: int
    tenant_ids: tuple[str, ...] | None
    source: str
    started_ms: int
    deadline_ms: int
    partitions: int
    status: str = "running"  # running | completed | failed
    reported: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    evaluated: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    finished_ms: int | None = None
    error: str | None = None

    # ------------------------------------------------------------------ derived
    def keys(self) -> dict[str, tuple[int, ...]]:
        """(tenant:model) -> the partitions that hold data for it."""
        out: dict[str, list[int]] = {}
        for partition, keys in sorted(self.reported.items()):
            for key in keys:
                out.setdefault(key, []).append(partition)
        return {k: tuple(v) for k, v in out.items()}

    def all_reported(self) -> bool:
        return len(self.reported) >= self.partitions

    def totals(self) -> dict[str, int]:
        return {f: sum(int(c.get(f, 0)) for c in self.evaluated.values()) for f in COUNT_FIELDS}

    def tenants(self) -> list[str]:
        if self.tenant_ids is not None:
            return sorted(self.tenant_ids)
        return sorted({k.split(":", 1)[0] for k in self.keys()})

    def summary(self) -> dict[str, object]:
        keys = self.keys()
        return {"jobRunId": self.job_run_id, "status": self.status, "source": self.source,
                "windowStartMs": self.window_start_ms, "windowEndMs": self.window_end_ms,
                "tenantIds": list(self.tenant_ids) if self.tenant_ids is not None else None,
                "partitionsReported": len(self.reported), "partitions": self.partitions,
                "keys": len(keys), "keysEvaluated": len(self.evaluated), **self.totals(),
                "startedMs": self.started_ms, "finishedMs": self.finished_ms, "error": self.error}

    # ------------------------------------------------------------------ codec
    def to_bytes(self) -> bytes:
        doc = {**self.__dict__, "reported": {str(k): list(v) for k, v in self.reported.items()},
               "tenant_ids": list(self.tenant_ids) if self.tenant_ids is not None else None}
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "JobRun":
        doc = orjson.loads(raw)
        doc["reported"] = {int(k): tuple(v) for k, v in doc["reported"].items()}
        doc["tenant_ids"] = tuple(doc["tenant_ids"]) if doc["tenant_ids"] is not None else None
        return cls(**doc)


def start(run: JobRun | None, new: JobRun) -> tuple[JobRun, list[Action]]:
    """A start message. A known jobRunId starts nothing new (a duplicate trigger); while no
    partition has reported, the fan-out is repeated in case the first one was lost in a crash."""
    if run is None:
        return new, [FanOut()]
    if run.status == "running" and not run.reported:
        return run, [FanOut()]
    return run, []


def report(run: JobRun, partition: int, keys: list[str], now_ms: int) -> tuple[JobRun, list[Action]]:
    if run.status != "running":
        return run, []
    if partition not in run.reported:
        run = replace(run, reported={**run.reported, partition: tuple(sorted(keys))})
    if not run.all_reported():
        return run, []
    pending = {k: p for k, p in run.keys().items() if k not in run.evaluated}
    if not pending:
        return _complete(run, now_ms)
    return run, [Evaluate(pending)]


def evaluated(run: JobRun, key: str, counts: Mapping[str, int], now_ms: int) -> tuple[JobRun, list[Action]]:
    if run.status != "running":
        return run, []
    if key not in run.evaluated:
        run = replace(run, evaluated={**run.evaluated, key: {f: int(counts.get(f, 0)) for f in COUNT_FIELDS}})
    if run.all_reported() and set(run.keys()) <= set(run.evaluated):
        return _complete(run, now_ms)
    return run, []


def check_deadline(run: JobRun, now_ms: int) -> tuple[JobRun, list[Action]]:
    if run.status != "running" or now_ms < run.deadline_ms:
        return run, []
    keys = run.keys()
    error = (f"deadline of {(run.deadline_ms - run.started_ms) / 1000:.0f}s passed: "
             f"{len(run.reported)}/{run.partitions} partitions reported, "
             f"{len(run.evaluated)}/{len(keys)} keys evaluated")
    run = replace(run, status="failed", finished_ms=now_ms, error=error)
    return run, [Fail({"job": "model-monitoring", "jobRunId": run.job_run_id, "error": error,
                       "failedAtMs": now_ms})]


def _complete(run: JobRun, now_ms: int) -> tuple[JobRun, list[Action]]:
    now_ms = max(now_ms, run.started_ms)
    run = replace(run, status="completed", finished_ms=now_ms)
    payload = {"job": "model-monitoring", "jobRunId": run.job_run_id, "tenants": run.tenants(),
               **run.totals(), "durationMs": now_ms - run.started_ms, "completedAtMs": now_ms}
    return run, [Complete(payload)]
