"""The end of table recovery (streams/recovery.py): no record of a stream partition is delivered
between its seek and the flow control's `resume()`, which clears the stream queues, so recovery
drops none of the records the streams are about to process.

The seek and the records are stand-ins: the consumer's `seek_to_committed` (the round trip to the
group coordinator), its `resume_partitions`, and the fetcher. `Fetching` plays the drain loop,
putting one record of each resumed stream partition into a stream queue on every turn of the
event loop, as the drain loop does once the fetcher has records of a resumed partition; the app,
its Recovery, its consumer's `perform_seek` and its flow control are faust's and the project's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust
import pytest
from faust.tables.recovery import Recovery as FaustRecovery
from faust.types import TP

from model_monitoring.agents.service import build_app
from model_monitoring.streams.recovery import Recovery, TableManager
from model_monitoring.streams.settings import load_settings
from model_monitoring.streams.write_gate import write_gate

STREAMS = {TP("ml.outcomes", 0), TP("ml.outcomes", 1)}


class Fetching:
    """The drain loop as recovery ends: every loop turn, a record of each resumed partition."""

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.resumed: set[TP] = set()
        self.queue = app.FlowControlQueue(maxsize=100_000, clear_on_resume=True)
        self.delivered = 0
        self.resumed_at_seeks: list[set[TP]] = []
        consumer: Any = app.consumer
        changelog = TP(sorted(app.tables.changelog_topics)[0], 0)  # a table's: recovery's own
        consumer.assignment = lambda: STREAMS | {changelog}
        consumer.resume_partitions = self.resumed.update
        consumer.seek_to_committed = self.seek_to_committed
        app._fetcher.maybe_start = self.fetcher_started  # type: ignore[attr-defined]
        self.task = asyncio.create_task(self.drain())

    async def seek_to_committed(self) -> dict[TP, int]:
        self.resumed_at_seeks.append(set(self.resumed))
        for _ in range(5):  # the round trip to the group coordinator
            await asyncio.sleep(0)
        return {tp: 5 for tp in STREAMS}

    async def fetcher_started(self) -> None:
        return None

    async def drain(self) -> None:
        while True:
            for _ in self.resumed & STREAMS:
                self.queue.put_nowait(object())
                self.delivered += 1
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def app(tmp_path: Any) -> AsyncIterator[faust.App]:
    settings = load_settings({"MODEL_MONITORING_DATA_DIR": str(tmp_path), "MODEL_MONITORING_STORE": "memory",
                              "MODEL_MONITORING_JWT_SECRET": "x" * 32,
                              "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    app = build_app(settings).app
    app.flow_control.resume()  # the changelogs were read with flow active, as in a recovery
    yield app


def test_the_service_app_recovers_with_the_project_recovery(app: faust.App) -> None:
    assert type(app.tables) is TableManager
    assert type(app.tables.recovery) is Recovery  # type: ignore[attr-defined]


@pytest.mark.parametrize("end", ["on_recovery_completed", "_resume_streams"])
async def test_recovery_ends_dropping_no_record_delivered_after_the_seek(app: faust.App, end: str) -> None:
    fetching = Fetching(app)
    recovery = app.tables.recovery  # type: ignore[attr-defined]
    await getattr(recovery, end)(generation_id=app.consumer_generation_id)
    for _ in range(3):
        await asyncio.sleep(0)
    await fetching.stop()
    # the seeks: the rewind of uncommitted partitions (streams/rewind.py), then perform_seek's
    assert fetching.resumed_at_seeks == [set(), set()], "stream partitions were resumed before their seek"
    assert fetching.resumed == STREAMS
    assert app.flow_control.is_active()
    assert fetching.delivered > 0
    assert fetching.queue.qsize() == fetching.delivered, "recovery cleared records delivered to the streams"


async def test_faust_recovery_drops_the_records_delivered_during_the_seek(app: faust.App) -> None:
    """Why the project's Recovery exists: faust's own resumes the stream partitions before the
    seek and clears the queues after it, dropping what the drain loop delivered meanwhile."""
    fetching = Fetching(app)
    recovery = FaustRecovery(app, app.tables, loop=asyncio.get_running_loop())
    await recovery.on_recovery_completed(generation_id=app.consumer_generation_id)
    await fetching.stop()
    assert fetching.resumed_at_seeks[-1] == STREAMS
    assert fetching.queue.qsize() < fetching.delivered


@pytest.mark.parametrize("end", ["on_recovery_completed", "_resume_streams"])
async def test_recovery_opens_the_table_writers_gate_before_the_streams_resume(app: faust.App, end: str) -> None:
    """A rebalance closes the gate (the consumer's revocation, streams/write_gate.py); the end of
    recovery opens it, by the time the stream partitions are resumed."""
    fetching = Fetching(app)
    gate = write_gate(app)
    gate.close()
    opened_at_resume: list[bool] = []
    resume = fetching.resumed.update

    def resuming(tps: Any) -> None:
        opened_at_resume.append(gate.is_open)
        resume(tps)

    app.consumer.resume_partitions = resuming  # type: ignore[method-assign]
    recovery = app.tables.recovery  # type: ignore[attr-defined]
    await getattr(recovery, end)(generation_id=app.consumer_generation_id)
    await fetching.stop()
    assert gate.is_open and opened_at_resume and all(opened_at_resume[-1:])
