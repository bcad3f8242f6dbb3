"""Regression: at least once, input offsets committed while table writes still waited in faust's
producer buffer (its flush gives up after one 0.1 s wait), so a kill lost them for good
(streams/producer_buffer.py). The buffer here is faust's own, running its own task; only the
destination is a recorder that takes 0.2 s per message, as a full batch makes the client do."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.transport.producer import ProducerBuffer

from model_monitoring.streams.producer_buffer import drain, flush_durably


class SlowDestination:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.sent: list[int] = []

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(self.seconds)
        self.sent.append(fut.n)


def _message(n: int, dest: SlowDestination) -> Any:
    return SimpleNamespace(n=n, message=SimpleNamespace(channel=dest))


def _buffer() -> ProducerBuffer:
    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
    return buffer


def test_drain_waits_for_every_queued_message_where_fausts_flush_gives_up() -> None:
    async def scenario() -> tuple[list[int], int, list[int], int]:
        dest = SlowDestination(0.2)
        buffer = _buffer()
        await buffer.start()
        try:
            for n in range(5):
                buffer.put(_message(n, dest))
            await buffer.flush()  # faust's: back after the first 0.1 s without a send
            after_flush = (list(dest.sent), buffer.size)
            for n in range(5, 8):
                buffer.put(_message(n, dest))
            assert await drain(buffer, timeout=30)
            return after_flush[0], after_flush[1], list(dest.sent), buffer.size
        finally:
            await buffer.stop()

    sent_by_flush, left_by_flush, sent_by_drain, left_by_drain = asyncio.run(scenario())
    assert left_by_flush > 0 and len(sent_by_flush) < 5  # the defect drain is for
    assert sent_by_drain == list(range(8)) and left_by_drain == 0  # all of them, in order


def test_drain_reports_a_buffer_that_does_not_get_there_in_time() -> None:
    async def scenario() -> tuple[bool, bool]:
        dest = SlowDestination(0.5)
        buffer = _buffer()
        await buffer.start()
        try:
            for n in range(4):
                buffer.put(_message(n, dest))
            in_time = await drain(buffer, timeout=0.3)
            later = await drain(buffer, timeout=30)
            return in_time, later
        finally:
            await buffer.stop()

    assert asyncio.run(scenario()) == (False, True)


def test_drain_of_a_buffer_not_running_publishes_what_waits_in_order() -> None:
    async def scenario() -> list[int]:
        dest = SlowDestination(0.0)
        buffer = _buffer()
        for n in range(3):
            buffer.put(_message(n, dest))
        assert await drain(buffer, timeout=1)
        return dest.sent

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_flush_durably_is_an_ordering_barrier_where_fausts_flush_is_not() -> None:
    """The evaluator's "marks before events" (and the join log's "entries before partials"):
    everything queued before `flush_durably` is with the destination when it returns, and then
    the client's own flush ran — faust's `producer.flush()` came back with writes still queued."""
    async def scenario() -> tuple[int, list[int], int, list[str]]:
        dest = SlowDestination(0.2)
        buffer = _buffer()
        calls: list[str] = []

        async def client_flush() -> None:
            await buffer.flush()  # what faust's Producer.flush does first: gives up early
            calls.append(f"client flush after {len(dest.sent)} sent")

        app = SimpleNamespace(producer=SimpleNamespace(buffer=buffer, flush=client_flush))
        await buffer.start()
        try:
            for n in range(5):
                buffer.put(_message(n, dest))
            await app.producer.flush()
            left_by_faust = buffer.size
            await flush_durably(app)
            return left_by_faust, list(dest.sent), buffer.size, calls
        finally:
            await buffer.stop()

    left_by_faust, sent, left, calls = asyncio.run(scenario())
    assert left_by_faust > 0  # the defect: an event sent now would overtake these writes
    assert sent == list(range(5)) and left == 0
    assert calls[-1] == "client flush after 5 sent"  # drained first, then the client's flush
