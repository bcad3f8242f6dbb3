"""Regression (found by bench/reliability.py, crash during the run): a worker killed while the
evaluator was publishing a (tenant, model)'s events published all of them again after the
restart — the redelivered part found the evaluation not done — so some events went out twice.
The evaluator now marks (and flushes) the moment it starts publishing, with the key's incidents
after the run; a redelivery that finds the mark evaluates the run again from the incidents as
they were before it, reads the output topics back and publishes only what is missing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from model_monitoring.agents import snapshot
from model_monitoring.agents.published import identity
from model_monitoring.commands.simulate import DAY_MS
from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.tables.evaluation_state import Evaluation, store_part
from model_monitoring.tables.incidents import IncidentBook
from model_monitoring.tables.keys import EvaluationKey, EvaluationPartKey, IncidentBookKey
from model_monitoring.tables.run_messages import EvaluateKeys, EvaluateRequest, SnapshotPart
from tests.support.evaluator import END, evaluator_monitor, part


@pytest.fixture
def monitor() -> Any:
    return evaluator_monitor()


PART_KEY = EvaluationPartKey(0, "run-1", "acme:churn", 0).encode()


def received(monitor: Any) -> Evaluation:
    """The evaluation of acme:churn with partition 0's part kept beside it, as the evaluator
    leaves it once the part has come (and as a crash before its end leaves it)."""
    if not hasattr(monitor, "stored_part"):
        monitor.stored_part = store_part(part(monitor))
    monitor.tables.evaluations[PART_KEY] = monitor.stored_part
    return Evaluation("run-1", "acme:churn", END - 7 * DAY_MS, END).receive(0)


def evaluate_message(single: bool = False) -> Any:
    """The tracker's request to evaluate acme:churn (in a batch; `single`: as an older release
    sent it, one key a message)."""
    request = (EvaluateRequest("run-1", "acme:churn", (0,), END - 7 * DAY_MS, END) if single else
               EvaluateKeys("run-1", (("acme:churn", (0,)),), END - 7 * DAY_MS, END))
    return SimpleNamespace(message=SimpleNamespace(value=request.to_bytes(), partition=0))


async def test_first_attempt_marks_before_it_publishes(monitor: Any) -> None:
    key = EvaluationKey(0, "run-1", "acme:churn").encode()
    ev = received(monitor)
    monitor.tables.evaluations[key] = ev.to_bytes()
    await snapshot.Evaluator(monitor).handle(evaluate_message())
    calls = monitor.recorder.calls
    assert calls[0] == ("flush", None)  # the mark and the incidents were out before the first event
    assert monitor.recorder.sent("drift"), "the test data must hold an alert"
    done = Evaluation.from_bytes(monitor.tables.evaluations[key])
    assert done.done and PART_KEY not in monitor.tables.evaluations  # the kept part goes when done
    (report,) = monitor.recorder.sent("runs")
    assert report["type"] == "evaluated-keys" and [k for k, _ in report["results"]] == ["acme:churn"]
    book = IncidentBook.from_bytes(monitor.tables.incidents[IncidentBookKey(0, "acme:churn").encode()])
    assert book.last_run == "run-1" and book.before == {}
    assert {i.incident_id for i in book.open.values()} == {d["incidentId"] for d in monitor.recorder.sent("drift")}
    # detectedAt and openedAt are the mark's time, which a resumed attempt reads back
    assert {d["detectedAt"] for d in monitor.recorder.sent("drift")} == {format_timestamp(done.publishing_since_ms or 0)}


async def test_a_resumed_evaluation_publishes_only_what_is_missing(
        monitor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # what a complete first attempt publishes
    key = EvaluationKey(0, "run-1", "acme:churn").encode()
    ev = received(monitor)
    monitor.tables.evaluations[key] = ev.to_bytes()
    await snapshot.Evaluator(monitor).handle(evaluate_message())
    everything = {k: monitor.recorder.sent(k) for k in ("snapshot", "drift", "degraded")}
    first = Evaluation.from_bytes(monitor.tables.evaluations[key])
    mark = first.publishing_since_ms
    assert mark is not None
    # the interrupted attempt got the first snapshot and the first drift event out; the table
    # kept the mark and the incidents (flushed before any event), not the end of the evaluation
    out = {identity("snapshot", everything["snapshot"][0]), identity("drift", everything["drift"][0])}

    async def read_back(settings: Any, job_run_id: str, model_keys: list[str], since_ms: int) -> dict:
        assert (job_run_id, model_keys, since_ms) == ("run-1", ["acme:churn"], mark)
        return {"acme:churn": out}

    monitor.recorder.calls.clear()
    received(monitor)  # the part was still kept when the worker died
    monitor.tables.evaluations[key] = ev.publishing(mark).to_bytes()  # recovered, not done
    monkeypatch.setattr(snapshot, "already_published", read_back)
    await snapshot.Evaluator(monitor).handle(evaluate_message())
    again = {k: monitor.recorder.sent(k) for k in ("snapshot", "drift", "degraded")}
    assert ("flush", None) not in monitor.recorder.calls
    for kind in again:
        # the same events, incident status included (the book replays the run from before it)
        assert again[kind] == [d for d in everything[kind] if identity(kind, d) not in out]
    done = Evaluation.from_bytes(monitor.tables.evaluations[key])
    assert done.done and done.counts == first.counts
    # the counts are of checks: the drift in the whole version and in its one segment is one event
    assert done.counts["driftDetected"] == 2 * len(everything["drift"])
    assert [d["segments"][0]["segment"] for d in everything["drift"]] == ["emea"] * len(everything["drift"])


async def test_an_evaluation_resumed_without_its_incidents_yields_the_same_events(
        monitor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other side of the crash: the incidents' write was lost with the worker (the mark
    was flushed, nothing was published). The run applies to the old book and says the same."""
    key = EvaluationKey(0, "run-1", "acme:churn").encode()
    ev = received(monitor)
    monitor.tables.evaluations[key] = ev.to_bytes()
    await snapshot.Evaluator(monitor).handle(evaluate_message())
    everything = monitor.recorder.sent("drift")
    book = dict(monitor.tables.incidents)
    mark = Evaluation.from_bytes(monitor.tables.evaluations[key]).publishing_since_ms

    async def nothing_out(settings: Any, job_run_id: str, model_keys: list[str], since_ms: int) -> dict:
        return {key: set() for key in model_keys}

    monitor.recorder.calls.clear()
    monitor.tables.incidents.clear()
    received(monitor)  # the part was still kept when the worker died
    monitor.tables.evaluations[key] = ev.publishing(mark).to_bytes()  # type: ignore[arg-type]
    monkeypatch.setattr(snapshot, "already_published", nothing_out)
    await snapshot.Evaluator(monitor).handle(evaluate_message(single=True))
    assert monitor.recorder.sent("drift") == everything
    assert monitor.tables.incidents == book


async def test_one_request_evaluates_the_ready_keys_behind_one_flush_and_the_others_when_their_part_comes(
        monitor: Any) -> None:
    ev = received(monitor)  # acme:churn: partition 0's part is in; globex:churn: not yet
    monitor.tables.evaluations[EvaluationKey(0, "run-1", "acme:churn").encode()] = ev.to_bytes()
    request = EvaluateKeys("run-1", (("acme:churn", (0,)), ("globex:churn", (0,))), END - 7 * DAY_MS, END)
    evaluator = snapshot.Evaluator(monitor)
    await evaluator.handle(SimpleNamespace(message=SimpleNamespace(value=request.to_bytes(), partition=0)))
    calls = monitor.recorder.calls
    assert calls[0] == ("flush", None) and [c for c in calls if c[0] == "flush"] == [("flush", None)]
    assert {d["tenantId"] for d in monitor.recorder.sent("snapshot")} == {"acme"}
    waiting = Evaluation.from_bytes(monitor.tables.evaluations[EvaluationKey(0, "run-1", "globex:churn").encode()])
    assert waiting.expected == (0,) and not waiting.ready()
    part_message = SnapshotPart.of("run-1", "globex:churn", 0, END - 7 * DAY_MS, END, part(monitor))
    await evaluator.handle(SimpleNamespace(message=SimpleNamespace(value=part_message.to_bytes(), partition=0)))
    assert {d["tenantId"] for d in monitor.recorder.sent("snapshot")} == {"acme", "globex"}
    assert [[k for k, _ in r["results"]] for r in monitor.recorder.sent("runs")] == [["acme:churn"], ["globex:churn"]]
    assert len([c for c in calls if c[0] == "flush"]) == 2
    assert not [k for k in monitor.tables.evaluations if b"|part|" in k]  # the kept parts went
