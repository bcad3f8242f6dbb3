"""The project transport (`mmkafka://`): its consumer's drain loop delivers every message once, in
order, without a task per message while flow is active, and a rebalance (`stop_flow()`) still
interrupts a delivery that is blocked, as faust's own drain loop does.

The drain runs for real (faust's `getmany` and `_wait_next_records`); only the Kafka client
below it (`_getmany`) and the conductor above it (`callback`) are stand-ins."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from faust.transport import conductor as faust_conductor
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from mode import Service

import model_monitoring.streams.transport
from model_monitoring.agents.service import build_app
from model_monitoring.streams.settings import load_settings
from model_monitoring.streams.transport import Conductor, Consumer, SuspendedDelivery, Transport
from model_monitoring.streams.write_gate import write_gate
from tests.support.waiting import until

TOPIC = "features"
TP0, TP1 = TP(TOPIC, 0), TP(TOPIC, 1)


def record(tp: TP, offset: int) -> ConsumerRecord:
    return ConsumerRecord(tp.topic, tp.partition, offset, 1_700_000_000_000, 0, b"k",
                          f"{tp.partition}:{offset}".encode(), None, 1, 5, [])


class FakeFetcher(Service):
    """What `_drain_messages` needs of faust's Fetcher: a `_stopped` event."""


class Harness:
    """One consumer of a real faust.App on `mmkafka://`, fed from a queue of fetch results."""

    def __init__(self) -> None:
        self.app = faust.App("transport-test", broker="mmkafka://127.0.0.1:1", store="memory://")
        consumer = self.app.consumer
        assert isinstance(consumer, Consumer)
        self.consumer: Consumer = consumer
        self.fetches: deque[dict[TP, list[ConsumerRecord]]] = deque()
        self.fetch_calls = 0
        self.delivered: list[tuple[int, int]] = []
        self.fetcher = FakeFetcher()
        consumer._active_partitions = {TP0, TP1}
        consumer.highwater = lambda tp: 1_000_000  # type: ignore[method-assign]
        consumer._getmany = self._getmany  # type: ignore[method-assign]
        consumer.callback = self.callback

    async def _getmany(self, active_partitions: Any, timeout: float) -> dict[TP, list[ConsumerRecord]]:
        self.fetch_calls += 1
        if self.fetches:
            return self.fetches.popleft()
        await asyncio.sleep(0.01)
        return {}

    async def callback(self, message: Any) -> None:
        self.delivered.append((message.partition, message.offset))

    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(self.consumer._drain_messages(self.fetcher))

    async def stop(self, task: asyncio.Task[None]) -> None:
        self.fetcher._stopped.set()
        await asyncio.wait_for(task, timeout=5)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    yield Harness()  # built inside the test's event loop, as the worker builds its app


# ---------------------------------------------------------------- the transport is the one loaded
def test_mmkafka_url_loads_the_project_transport() -> None:
    assert faust.transport.by_url("mmkafka://127.0.0.1:9092") is Transport
    assert issubclass(Transport, faust_aiokafka.Transport)
    assert issubclass(Transport.Consumer, faust_aiokafka.Consumer)
    assert Transport.Consumer is Consumer
    assert model_monitoring.streams.transport.__file__.startswith(str(__import__("pathlib").Path(__file__).parents[2]))


async def test_the_service_app_runs_on_the_project_transport(tmp_path: Any) -> None:
    settings = load_settings({"MODEL_MONITORING_DATA_DIR": str(tmp_path), "MODEL_MONITORING_STORE": "memory",
                              "MODEL_MONITORING_JWT_SECRET": "x" * 32,
                              "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1,127.0.0.1:2"})
    app = build_app(settings).app
    assert all(url.scheme == "mmkafka" for url in app.conf.broker)
    assert type(app.transport) is Transport
    assert type(app.consumer) is Consumer


# ---------------------------------------------------------------- flow active: in order, once, no tasks
async def test_delivers_in_order_each_once_without_a_task_per_message(harness: Harness) -> None:
    batch = {TP0: [record(TP0, i) for i in range(150)], TP1: [record(TP1, i) for i in range(150)]}
    harness.fetches.append(batch)
    expected = [(tp.partition, r.offset) for tp, r in harness.consumer.scheduler.iterate(batch)]
    loop = asyncio.get_running_loop()
    created: list[Any] = []
    previous = loop.get_task_factory()

    def counting_factory(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
        created.append(coro)
        return asyncio.Task(coro, loop=loop)

    task = harness.start()
    loop.set_task_factory(counting_factory)
    try:
        await until(lambda: len(harness.delivered) == 300, 5, every=0.005)
    finally:
        loop.set_task_factory(previous)
    await harness.stop(task)
    assert harness.delivered == expected
    assert sorted(harness.delivered) == sorted(set(harness.delivered))
    assert harness.consumer._read_offset[TP0] == 149 and harness.consumer._read_offset[TP1] == 149
    # faust's own loop makes 4 tasks per message (1,200 here); ours none in the fast path
    assert len(created) < 20, f"{len(created)} tasks for 300 messages"
    assert harness.consumer.suspended_deliveries == 0


async def test_messages_at_or_below_the_read_offset_are_dropped(harness: Harness) -> None:
    harness.consumer._read_offset[TP0] = 5
    harness.fetches.append({TP0: [record(TP0, i) for i in range(3, 9)]})
    task = harness.start()
    await until(lambda: len(harness.delivered) == 4, 5, every=0.005)
    await harness.stop(task)
    assert harness.delivered == [(0, 5), (0, 6), (0, 7), (0, 8)]


async def test_a_delivery_that_suspends_is_finished_and_keeps_the_order(harness: Harness) -> None:
    async def slow_now_and_then(message: Any) -> None:
        if message.offset % 7 == 0:
            await asyncio.sleep(0)  # e.g. a full stream buffer draining
        harness.delivered.append((message.partition, message.offset))

    harness.consumer.callback = slow_now_and_then
    harness.fetches.append({TP0: [record(TP0, i) for i in range(50)]})
    task = harness.start()
    await until(lambda: len(harness.delivered) == 50, 5, every=0.005)
    await harness.stop(task)
    assert harness.delivered == [(0, i) for i in range(50)]
    assert harness.consumer.suspended_deliveries == 8


async def test_callback_errors_propagate_from_both_paths(harness: Harness) -> None:
    async def fails_at_once(message: Any) -> None:
        raise ValueError("boom")

    async def fails_after_suspending(message: Any) -> None:
        await asyncio.sleep(0)
        raise KeyError("later")

    msg = harness.consumer._to_message(TP0, record(TP0, 0))
    with pytest.raises(ValueError):
        await harness.consumer.deliver(fails_at_once, msg)
    with pytest.raises(KeyError):
        await harness.consumer.deliver(fails_after_suspending, msg)


# ---------------------------------------------------------------- flow suspended mid-drain (rebalance)
async def test_stop_flow_interrupts_a_blocked_delivery_and_drain_waits(harness: Harness) -> None:
    buffer_full = asyncio.Event()  # never set: the stream's buffer stays full
    entered, cancelled = asyncio.Event(), []

    async def blocks_at_3(message: Any) -> None:
        harness.delivered.append((message.partition, message.offset))
        if message.offset == 3 and not cancelled:
            entered.set()
            try:
                await buffer_full.wait()
            except asyncio.CancelledError:
                cancelled.append(message.offset)
                raise

    harness.consumer.callback = blocks_at_3
    harness.fetches.append({TP0: [record(TP0, i) for i in range(10)]})
    task = harness.start()
    await asyncio.wait_for(entered.wait(), timeout=5)
    calls_before = harness.fetch_calls

    parked = asyncio.Event()  # the drain loop waits for the flow to resume: it delivers nothing more
    resume_wait = harness.consumer.can_resume_flow.wait

    async def wait_for_resume() -> bool:
        parked.set()
        return await resume_wait()

    harness.consumer.can_resume_flow.wait = wait_for_resume  # type: ignore[method-assign]
    harness.consumer.stop_flow()  # what faust's on_partitions_revoked does
    await until(lambda: bool(cancelled), 5, every=0.005)
    await asyncio.wait_for(parked.wait(), timeout=5)
    assert cancelled == [3], "the blocked delivery was not interrupted"
    assert harness.delivered == [(0, i) for i in range(4)], "kept delivering after stop_flow"
    assert not task.done(), "the drain loop must survive a rebalance"
    assert harness.fetch_calls == calls_before, "fetched while flow was stopped"

    # the rebalance ends; the fetcher restarts from the committed offsets
    harness.consumer._read_offset[TP0] = None
    harness.fetches.append({TP0: [record(TP0, i) for i in range(3, 10)]})
    harness.consumer.resume_flow()
    await until(lambda: len(harness.delivered) == 11, 5, every=0.005)
    await harness.stop(task)
    assert harness.delivered[4:] == [(0, i) for i in range(3, 10)]


async def test_consumer_stop_ends_a_blocked_delivery(harness: Harness) -> None:
    never, entered = asyncio.Event(), asyncio.Event()

    async def blocks(message: Any) -> None:
        entered.set()
        await never.wait()

    harness.consumer.callback = blocks
    harness.fetches.append({TP0: [record(TP0, 0), record(TP0, 1)]})
    task = harness.start()
    await asyncio.wait_for(entered.wait(), timeout=5)
    harness.consumer._stopped.set()
    await asyncio.wait_for(task, timeout=5)


async def test_with_flow_already_stopped_delivery_uses_faust_race(harness: Harness) -> None:
    harness.consumer.stop_flow()
    never = asyncio.Event()
    reached = []

    async def blocks(message: Any) -> None:
        reached.append(message.offset)
        await never.wait()

    msg = harness.consumer._to_message(TP0, record(TP0, 0))
    await asyncio.wait_for(harness.consumer.deliver(blocks, msg), timeout=5)
    assert harness.consumer.suspended_deliveries == 0


# ---------------------------------------------------------------- the resumable rest of a coroutine
async def test_suspended_delivery_passes_results_and_cancellation_through() -> None:
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def waits() -> int:
        return await fut + 1

    coro = waits()
    first = coro.send(None)
    assert first is fut
    rest = asyncio.ensure_future(SuspendedDelivery(coro, first))
    fut.set_result(41)
    assert await rest == 42

    fut2: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    seen = []

    async def waits_forever() -> None:
        try:
            await fut2
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    coro2 = waits_forever()
    rest2 = asyncio.ensure_future(SuspendedDelivery(coro2, coro2.send(None)))
    await asyncio.sleep(0)
    rest2.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rest2
    assert seen == ["cancelled"] and fut2.cancelled()


# ---------------------------------------------------------------- the publishing side
async def test_topic_takes_the_running_producer_without_yielding() -> None:
    app = faust.App("transport-topic-test", broker="mmkafka://127.0.0.1:1", store="memory://",
                    Topic=model_monitoring.streams.transport.Topic)
    topic = app.topic("changelog-like")
    assert isinstance(topic, model_monitoring.streams.transport.Topic)
    app.producer._started.set()  # what Service.start() sets once the producer runs
    coro = topic._get_producer()
    with pytest.raises(StopIteration) as done:
        coro.send(None)  # faust's Topic suspends here three times per message (mode stampede)
    assert done.value.value is app.producer


async def test_topic_starts_a_producer_that_is_not_running() -> None:
    app = faust.App("transport-topic-test2", broker="mmkafka://127.0.0.1:1", store="memory://",
                    Topic=model_monitoring.streams.transport.Topic)
    started = []

    async def fake_start() -> None:
        started.append(True)
        app.producer._started.set()

    app.producer.start = fake_start  # type: ignore[method-assign]
    assert await app.topic("t")._get_producer() is app.producer
    assert started == [True]


async def test_acknowledged_offsets_that_cannot_commit_are_reported(harness: Harness,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """faust commits a partition only from the offset after its last commit on: acked offsets
    behind a hole that is never acked wait for ever. The consumer names the partition."""
    consumer = harness.consumer
    consumer._committed_offset[TP0] = 10
    consumer._committed_offset[TP1] = 10
    consumer._acked[TP0].extend([14, 15, 16])  # 10..13 never acknowledged: stalled
    consumer._acked[TP1].extend([11, 12])      # the next ones: commit as usual
    assert consumer.stalled_commits() == {TP0: (10, 14, 3)}
    consumer._committed_offset[TP1] = 20
    consumer._acked[TP1][:] = [25, 26]
    consumer._gap[TP1].addi(21, 25)  # skipped by the consumer (a transaction's marker, aborted records)
    assert consumer.stalled_commits() == {TP0: (10, 14, 3)}  # not TP1: the gap fills 21..24
    with caplog.at_level("WARNING"):
        consumer._report_stalled_commits()
        consumer._report_stalled_commits()  # once per partition per interval
    lines = [r.getMessage() for r in caplog.records if "cannot commit" in r.getMessage()]
    assert len(lines) == 1 and "committed 10, lowest acknowledged 14 (3 acknowledged waiting)" in lines[0]


@pytest.mark.parametrize("how", ["skipped", "cancelled"])
async def test_a_commit_that_does_not_happen_gives_its_acked_offsets_back(harness: Harness, how: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """faust takes the acked offsets below the commit offset off the partition's list before it
    commits. A commit skipped (the producer buffer not drained in time) or cancelled while it
    waited (a rebalance, a stop) used to lose them: the partition's next acked offset then lay
    more than one past its last commit, and it never committed again. Now the next commit
    commits them. (The restarted workers found with every group offset stuck at 3-10 were a
    different hole: streams/recovery.py.)"""
    consumer = harness.consumer
    consumer._committed_offset[TP0] = 10
    consumer._acked[TP0].extend(range(10, 21))
    consumer._acked_index[TP0].update(range(10, 21))

    async def not_drained(buffer: Any, timeout: float) -> bool:
        if how == "cancelled":
            await asyncio.sleep(3600)
        return False

    monkeypatch.setattr(model_monitoring.streams.transport, "drain", not_drained)
    if how == "skipped":
        assert await consumer._commit_tps([TP0], start_new_transaction=False) is False
    else:
        task = asyncio.create_task(consumer._commit_tps([TP0], start_new_transaction=False))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    consumer._acked[TP0].extend([21, 22])  # acked meanwhile
    consumer._acked_index[TP0].update([21, 22])
    assert consumer.stalled_commits() == {}
    assert consumer._filter_committable_offsets([TP0]) == {TP0: 23}


async def test_a_commit_that_hangs_is_reported_with_where_it_waits(harness: Harness, caplog: pytest.LogCaptureFixture,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit that does not end says so, and where it waits, until it ends: a worker whose
    offsets stop committing is otherwise silent."""
    consumer = harness.consumer
    consumer.SLOW_COMMIT_REPORT = 0.1
    consumer._committed_offset[TP0] = 10
    consumer._acked[TP0].extend(range(10, 21))

    async def producer_that_never_drains(buffer: Any, timeout: float) -> bool:
        await asyncio.sleep(3600)
        return True

    monkeypatch.setattr(model_monitoring.streams.transport, "drain", producer_that_never_drains)
    with caplog.at_level("WARNING"):
        task = asyncio.create_task(consumer._commit_tps([TP0], start_new_transaction=False))
        await until(lambda: sum("commit under way" in r.getMessage() for r in caplog.records) >= 2, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        reports = [r.getMessage() for r in caplog.records if "commit under way" in r.getMessage()]
        await asyncio.sleep(0.3)  # ended: no more reports
    assert [r.getMessage() for r in caplog.records if "commit under way" in r.getMessage()] == reports
    assert "producer_that_never_drains" in reports[0] and "_commit_offsets" in reports[0], reports[0]



@pytest.mark.parametrize("queue_drained", [False, True])
async def test_a_paused_partition_whose_buffer_was_full_stays_paused(harness: Harness, queue_drained: bool) -> None:
    """faust lets a partition whose stream buffer filled up slip past a pause: `getmany` yields a
    buffered partition's records even when it is not active, and `on_buffer_drop` makes it active
    again. A worker behind (full buffers) at a rebalance then delivered records during table
    recovery, before the seek, and the recovery's clearing of the queues dropped some of them
    behind later ones that were folded: records lost (issue 10's broker stall). Paused stays
    paused, whichever way the buffer went, until resumed."""
    consumer = harness.consumer
    tp2 = TP(TOPIC, 2)                         # not paused: the fetcher keeps fetching
    consumer._active_partitions = {TP0, TP1, tp2}
    consumer.on_buffer_full(TP0)               # the worker fell behind on TP0
    consumer.pause_partitions({TP0, TP1})      # a rebalance
    if queue_drained:
        consumer.on_buffer_drop(TP0)           # the queue was cleared / drained meanwhile
    consumer.on_buffer_full(TP1)               # a full buffer while paused changes nothing
    assert consumer._get_active_partitions() == {tp2}

    def fetch(first: int) -> dict[TP, list[ConsumerRecord]]:
        return {tp: [record(tp, i) for i in range(first, first + 5)] for tp in (TP0, TP1, tp2)}

    harness.fetches.append(fetch(0))
    task = harness.start()
    await until(lambda: len(harness.delivered) == 5, 5, every=0.005)
    await asyncio.sleep(0.05)
    assert harness.delivered == [(2, i) for i in range(5)]  # nothing of the paused partitions
    consumer.resume_partitions({TP0, TP1})     # after the seek
    harness.fetches.append(fetch(5))
    await until(lambda: len(harness.delivered) == 20, 5, every=0.005)
    await harness.stop(task)
    assert sorted(harness.delivered) == sorted([(2, i) for i in range(5)] + [(p, i) for p in (0, 1, 2) for i in range(5, 10)])


async def test_a_revocation_closes_the_writers_gate_and_waits_for_the_writes_under_way(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before faust revokes anything (its tables, then a recovery that reads the changelogs), the
    writes under way finish, so that recovery's flush has them all; none starts until the
    recovery opens the gate again (streams/write_gate.py)."""
    consumer = harness.consumer
    gate = write_gate(harness.app)
    events: list[str] = []

    async def faust_revocation(self: Any, revoked: set[TP]) -> None:
        events.append(f"faust revokes, gate open={gate.is_open}, busy={gate.busy}")

    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_revoked", faust_revocation)
    release = asyncio.Event()

    async def writer() -> None:
        async with gate.writing():
            await release.wait()
            events.append("write done")

    task = asyncio.create_task(writer())
    await asyncio.sleep(0)
    revoking = asyncio.create_task(consumer.on_partitions_revoked({TP0}))
    for _ in range(5):
        await asyncio.sleep(0)
    assert events == [] and not gate.is_open
    release.set()
    await asyncio.wait_for(revoking, 5)
    await task
    assert events == ["write done", "faust revokes, gate open=False, busy=0"]


def raw_message(offset: int, key: bytes | None, value: bytes | None) -> Message:
    return Message(TOPIC, 0, offset, 1_700_000_000.0, 0, {"h": b"1"}, key, value, None)


@pytest.mark.parametrize(("key", "value"), [(b"k", b'{"a": 1}'), (None, b"v"), (b"k", None), (b"", b"")])
async def test_raw_partitions_get_the_same_events_as_fausts_handler(key: bytes | None, value: bytes | None) -> None:
    """The conductor's handler for a partition of raw-bytes channels gives each channel the
    event faust's own handler gives: same key, value, headers and message, referenced once per
    channel. A partition with a channel of any other schema keeps faust's handler."""
    app = faust.App("conductor-test", broker="mmkafka://127.0.0.1:1", store="memory://")
    app.flow_control.resume()
    conductor = app.topics
    assert isinstance(conductor, Conductor)
    raw = app.topic(TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    ours_chans = {raw.clone(is_iterator=True), raw.clone(is_iterator=True)}
    faust_chans = {raw.clone(is_iterator=True), raw.clone(is_iterator=True)}
    ours = conductor._build_handler(TP0, ours_chans)
    fausts = faust_conductor.ConductorCompiler().build(conductor, TP0, faust_chans)
    m1, m2 = raw_message(7, key, value), raw_message(7, key, value)
    await ours(m1)
    await fausts(m2)
    assert m1.refcount == m2.refcount == 2
    for mine, theirs in zip((c.queue.get_nowait() for c in ours_chans),
                            (c.queue.get_nowait() for c in faust_chans), strict=True):
        assert type(mine) is type(theirs)
        assert (mine.key, mine.value, mine.headers) == (theirs.key, theirs.value, theirs.headers)
        assert mine.message is m1 and theirs.message is m2
    other = app.topic(TOPIC, value_type=str, value_serializer="raw")
    handler = conductor._build_handler(TP0, {raw.clone(is_iterator=True), other.clone(is_iterator=True)})
    assert getattr(handler, "__qualname__", None) != ours.__qualname__ == "_raw_handler.<locals>.on_message"


async def test_a_full_channel_queue_waits_for_room() -> None:
    """A message for a channel whose queue is full waits until the stream takes one out."""
    app = faust.App("conductor-test-full", broker="mmkafka://127.0.0.1:1", store="memory://",
                    stream_buffer_maxsize=2)
    app.flow_control.resume()
    chan = app.topic(TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw").clone(is_iterator=True)
    handler = app.topics._build_handler(TP0, {chan})
    await handler(raw_message(0, b"k", b"0"))
    await handler(raw_message(1, b"k", b"1"))
    third = asyncio.create_task(handler(raw_message(2, b"k", b"2")))
    await asyncio.sleep(0.05)
    assert not third.done() and chan.queue.qsize() == 2
    assert chan.queue.get_nowait().value == b"0"
    await asyncio.wait_for(third, 5)
    assert [chan.queue.get_nowait().value for _ in range(2)] == [b"1", b"2"]
