"""The checks scenarios share: the stream's state against the offline fold, every input record
accounted for (counted or dead-lettered), and a worker that survived."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.scenarios.common import Result
from model_monitoring.commands.harness import WorkerProcess
from tests.support.oracle import Fold, dlq_positions


def compare_state(result: Result, actual: Fold, expected: Fold) -> bool:
    """The stream's partials, summed over partitions, equal the offline fold exactly."""
    missing = set(expected.states) - set(actual.states)
    extra = set(actual.states) - set(expected.states)
    a, e = actual.comparable(), expected.comparable()
    differ = sorted(k for k in set(a) & set(e) if a[k] != e[k])
    detail = [(k, actual.states[k].histogram.n, expected.states[k].histogram.n,
               actual.states[k].performance.n, expected.states[k].performance.n) for k in differ[:3]]
    ok = result.check(not missing and not extra and not differ,
                      f"state differs from the offline fold: {len(missing)} missing, "
                      f"{len(extra)} extra, {len(differ)} different keys; (key, n, expected, "
                      f"outcomes, expected): {detail}")
    return ok


def counted(fold: Fold) -> int:
    """Records a fold counts: predictions in histograms plus outcomes joined into error sums."""
    return sum(s.histogram.n + s.performance.n for s in fold.states.values())


def check_dead_letters(result: Result, dead: list[Any]) -> int:
    """Each dead letter names a distinct source position and a reason; none is an internal
    error (a defect of ours, not of the message). Returns the number of distinct positions."""
    positions = dlq_positions(dead)
    if len(positions) < len(dead):  # at-least-once: a batch redelivered after a crash
        result.notes["dlq_repeats"] = len(dead) - len(positions)
    reasons = Counter(dict(r.headers).get("error", b"?").decode() for r in dead)
    result.notes["dlq_reasons"] = dict(sorted(reasons.items()))
    result.check("internal_error" not in reasons, f"{reasons['internal_error']} internal errors")
    return len(positions)


def account(result: Result, actual: Fold, expected: Fold, dead: list[Any]) -> None:
    """messages in = the distinct records of the log; accounted = counted + dead-lettered."""
    result.messages_in = counted(expected) + expected.malformed
    result.accounted = counted(actual) + check_dead_letters(result, dead)
    result.check(result.accounted == result.messages_in,
                 f"accounted {result.accounted} != in {result.messages_in}")


def worker_unaffected(result: Result, worker: WorkerProcess, pid: int) -> None:
    """Zero crashes: the same process, still answering /readyz with 200."""
    process = worker.process
    alive = process is not None and process.poll() is None
    result.check(alive and process is not None and process.pid == pid, f"worker {pid} is gone:\n{worker.log_tail(5)}")
    if alive:
        try:
            status, _ = worker.get("/readyz", timeout=5)
        except OSError as exc:
            status = -1
            result.problems.append(f"/readyz unreachable: {exc}")
        result.check(status == 200, f"/readyz answered {status}")
