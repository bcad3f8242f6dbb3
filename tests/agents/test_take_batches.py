"""`take_batches` (streams/batches.py) reads the stream's channel queue itself: a batch is
acknowledged when the agent asks for the next one, never when it leaves the batch another way;
a batch is at most `max_` events, or what arrived within `within` seconds; events of an older
consumer generation are skipped and acknowledged, as faust's stream iterator does; an error
thrown into the channel reaches the agent. A real faust app and channel, nothing mocked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import faust
import pytest
from faust.events import Event
from faust.types import EventT, Message

from model_monitoring.streams.batches import take_batches


@pytest.fixture
async def app() -> AsyncIterator[faust.App]:
    app = faust.App("take-batches-test", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
    app.finalize()
    app.flow_control.resume()
    yield app


def iterated(app: faust.App) -> tuple[faust.ChannelT, faust.StreamT]:
    """A channel's iterating clone and a stream over it: take_batches iterates that same clone
    (aiter of an iterator is itself), so what `put` puts there is what it reads."""
    it = aiter(app.channel())
    return it, app.stream(it)


def put(channel: faust.ChannelT, offset: int, generation_id: int) -> EventT:
    """An event as faust's conductor delivers it: its message referenced once, in the queue."""
    message = Message("t", 0, offset, time.time(), 0, {}, b"k", b"v", None, generation_id=generation_id)
    message.incref()
    event = Event(channel.app, b"k", b"v", {}, message)
    channel.queue.put_nowait(event)
    return event


async def test_a_batch_is_acknowledged_when_the_next_is_asked_for_and_not_when_left(app: faust.App) -> None:
    it, stream = iterated(app)
    events = [put(it, i, app.consumer_generation_id) for i in range(5)]
    batches = take_batches(stream, 2, 0.05)
    first = await anext(batches)
    assert [e.message.offset for e in first] == [0, 1]
    assert not any(e.message.acked for e in events)
    second = await anext(batches)  # asking for it: the first was processed
    assert [e.message.offset for e in second] == [2, 3]
    assert [e.message.acked for e in events] == [True, True, False, False, False]
    await batches.aclose()  # the agent left the second batch (cancelled, or failed)
    assert [e.message.acked for e in events] == [True, True, False, False, False]
    await stream.stop()


async def test_what_arrived_within_the_window_is_a_batch(app: faust.App) -> None:
    it, stream = iterated(app)
    batches = take_batches(stream, 100, 0.1)
    put(it, 0, app.consumer_generation_id)
    started = time.monotonic()
    batch = await asyncio.wait_for(anext(batches), 5)
    assert [e.message.offset for e in batch] == [0]
    assert time.monotonic() - started >= 0.09  # it waited for more, up to the window

    async def later() -> None:  # an idle stream: the next event wakes the batch
        await asyncio.sleep(0.05)
        put(it, 1, app.consumer_generation_id)
        put(it, 2, app.consumer_generation_id)

    task = asyncio.create_task(later())
    batch = await asyncio.wait_for(anext(batches), 5)
    await task
    assert [e.message.offset for e in batch] == [1, 2]
    await batches.aclose()
    await stream.stop()


async def test_events_of_an_older_generation_are_skipped_and_acknowledged(app: faust.App) -> None:
    it, stream = iterated(app)
    now = app.consumer_generation_id
    old = put(it, 0, now - 1)  # delivered before a rebalance
    new = put(it, 1, now)
    batches = take_batches(stream, 10, 0.05)
    batch = await asyncio.wait_for(anext(batches), 5)
    assert batch == [new]
    assert old.message.acked and not new.message.acked
    await batches.aclose()
    await stream.stop()


async def test_an_error_thrown_into_the_channel_reaches_the_agent(app: faust.App) -> None:
    it, stream = iterated(app)
    batches = take_batches(stream, 10, 0.05)
    await it.throw(RuntimeError("broken channel"))
    with pytest.raises(RuntimeError, match="broken channel"):
        await asyncio.wait_for(anext(batches), 5)
    await stream.stop()


async def test_a_rebalance_while_a_batch_fills_keeps_the_new_generations_events(app: faust.App) -> None:
    it, stream = iterated(app)
    batches = take_batches(stream, 10, 0.2)
    before = put(it, 0, app.consumer_generation_id)

    async def rebalance() -> EventT:
        await asyncio.sleep(0.05)  # the batch has taken the first event and waits for more
        app.consumer_generation_id += 1
        return put(it, 1, app.consumer_generation_id)

    task = asyncio.create_task(rebalance())
    batch = await asyncio.wait_for(anext(batches), 5)
    after = await task
    assert batch == [before, after]
    assert not after.message.acked
    await batches.aclose()
    await stream.stop()


async def test_the_channel_ending_ends_the_batches_without_an_error(app: faust.App) -> None:
    """faust throws StopAsyncIteration into a channel's queue when the app stops: the batches
    end there, as the stream's own iterator does (in an async generator it would otherwise
    become a RuntimeError that crashes the actor), and the batch taken stays unacknowledged."""
    it, stream = iterated(app)
    batches = take_batches(stream, 10, 0.2)
    first = put(it, 0, app.consumer_generation_id)
    batch = await asyncio.wait_for(anext(batches), 5)
    assert batch == [first]
    await it.throw(StopAsyncIteration())
    with pytest.raises(StopAsyncIteration):  # the generator ended; no RuntimeError
        await asyncio.wait_for(anext(batches), 5)
    assert first.message.acked  # the batch before was processed: asked for the next
    await stream.stop()


async def test_a_batch_larger_than_the_queue_fills_from_the_queue_as_it_refills() -> None:
    """`max_` above the channel queue's size: the batch takes events out as the conductor puts
    them in, and yields to the event loop while it waits (a batch that waited for the queue
    alone to hold the rest would spin, blocking the loop that refills it)."""
    app = faust.App("take-batches-small", broker="kafka://127.0.0.1:1", store="memory://",
                    autodiscover=False, stream_buffer_maxsize=8)
    app.finalize()
    app.flow_control.resume()
    it, stream = iterated(app)
    batches = take_batches(stream, 20, 2.0)

    async def conductor() -> None:  # puts as the queue has room, as the conductor does
        for offset in range(20):
            message = Message("t", 0, offset, time.time(), 0, {}, b"k", b"v", None,
                              generation_id=app.consumer_generation_id)
            message.incref()
            await it.queue.put(Event(app, b"k", b"v", {}, message))

    task = asyncio.create_task(conductor())
    try:
        batch = await asyncio.wait_for(anext(batches), 10)
        assert [e.message.offset for e in batch] == list(range(20))
    finally:
        task.cancel()  # done already when the batch took all 20
        await batches.aclose()
        await stream.stop()
