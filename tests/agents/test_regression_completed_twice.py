"""Regression (issue 10): the job tracker could publish `workflow.job.completed` twice when the
worker was killed between sending it and the table write that recorded the run as completed —
the redelivered `evaluated` message found the run still running and completed it again. The run
now goes through an outbox: saved (and flushed) with the completion before it is sent, cleared
after; a redelivery that finds a full outbox reads the topic back and sends only if missing.

The kill is played at each point around the send: the table keeps what reached the changelog
(everything up to the last flush, plus the writes before the kill), the worker restarts with a
new Tracker over it, and the message is redelivered."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from model_monitoring.agents import run as run_agent
from model_monitoring.schemas.validation import Validators
from model_monitoring.streams.metrics import Metrics
from model_monitoring.streams.settings import load_settings
from model_monitoring.tables.job_run import JobRun
from model_monitoring.tables.keys import ReportKey, RunKey
from model_monitoring.tables.run_messages import KeyEvaluated

COUNTS = {"driftChecked": 6, "performanceChecked": 2, "driftDetected": 1, "performanceDegraded": 0}


class Killed(Exception):
    """The worker's death at the chosen point."""


class Broker:
    """What reached the topics, in order (the completions a consumer would see)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.kill_at: str | None = None

    def topic(self, name: str) -> Any:
        async def send(key: bytes, value: bytes, partition: int | None = None) -> None:
            if self.kill_at == f"before-send:{name}":
                raise Killed
            self.sent.append((name, orjson.loads(value)))
        return SimpleNamespace(send=send)

    async def flush(self) -> None:
        pass

    def completions(self) -> list[dict[str, Any]]:
        return [doc for topic, doc in self.sent if topic == "completed"]


class JobRunsTable(dict):  # type: ignore[type-arg]
    """The job_runs table; a kill right after the completion went out loses the next write."""

    def __init__(self, broker: Broker, *a: Any) -> None:
        super().__init__(*a)
        self.broker = broker

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if self.broker.kill_at == "after-send" and self.broker.completions():
            raise Killed  # the send happened; this write never reaches the changelog
        super().__setitem__(key, value)


def monitor(broker: Broker, job_runs: dict[bytes, bytes]) -> Any:
    topics = SimpleNamespace(**{n: broker.topic(n) for n in (
        "completed", "failed", "snapshot_requests", "snapshot_parts")})
    return SimpleNamespace(
        settings=load_settings({"MODEL_MONITORING_JWT_SECRET": "x" * 32, "MODEL_MONITORING_PARTITIONS": "1"}),
        topics=topics, tables=SimpleNamespace(job_runs=JobRunsTable(broker, job_runs), run_status={}),
        validators=Validators(), metrics=Metrics(), app=SimpleNamespace(producer=broker))


def one_key_left() -> dict[bytes, bytes]:
    """A running run whose one partition reported one key, not yet evaluated (applied offset 1)."""
    run = JobRun("r1", 0, 7 * 86_400_000, ("acme",), "topic", 1_000, 10**15, 1, reported=(0,),
                 key_count=1, applied_offset=1)
    return {RunKey(0, "r1").encode(): run.to_bytes(),
            ReportKey(0, "r1", 0).encode(): orjson.dumps(["acme:churn"])}


def evaluated_event(offset: int = 2) -> Any:
    return SimpleNamespace(message=SimpleNamespace(
        value=KeyEvaluated("r1", "acme:churn", COUNTS).to_bytes(), partition=0, offset=offset))


@pytest.mark.parametrize("kill_at", ["before-send:completed", "after-send"])
async def test_a_kill_around_the_completion_publishes_it_exactly_once(
        kill_at: str, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = Broker()

    async def read_back(settings: Any, topic: str, job_run_id: str, since_ms: int) -> bool:
        assert topic == settings.completed_topic and job_run_id == "r1"
        return any(doc["jobRunId"] == job_run_id for doc in broker.completions())

    monkeypatch.setattr(run_agent, "terminal_published", read_back)
    table = one_key_left()
    broker.kill_at = kill_at
    first = monitor(broker, table)
    with pytest.raises(Killed):
        await run_agent.Tracker(first).handle(evaluated_event())
    survived = dict(first.tables.job_runs)  # what the changelog holds after the kill
    stored = JobRun.from_bytes(survived[RunKey(0, "r1").encode()])
    assert stored.outbox is not None and stored.outbox["kind"] == "completed"

    broker.kill_at = None
    restarted = monitor(broker, survived)
    await run_agent.Tracker(restarted).handle(evaluated_event())  # redelivered: not committed
    [completed] = broker.completions()
    assert completed["driftChecked"] == 6 and completed["tenants"] == ["acme"]
    final = JobRun.from_bytes(restarted.tables.job_runs[RunKey(0, "r1").encode()])
    assert final.status == "completed" and final.outbox is None and final.evaluated == 1

    await run_agent.Tracker(restarted).handle(evaluated_event(offset=3))  # a repeated report
    assert len(broker.completions()) == 1


async def test_without_a_kill_the_completion_goes_out_once_and_the_outbox_is_cleared() -> None:
    broker = Broker()
    m = monitor(broker, one_key_left())
    await run_agent.Tracker(m).handle(evaluated_event())
    assert len(broker.completions()) == 1
    final = JobRun.from_bytes(m.tables.job_runs[RunKey(0, "r1").encode()])
    assert final.outbox is None and final.applied_offset == 2
