"""Batches of a stream's events, each acknowledged only once the agent has processed it.

Why: faust's `Stream.take_events` acknowledges a batch in the `finally` around its `yield`, so a
batch is acknowledged however the agent leaves it: after processing it, but also when the agent
raised in the middle of it (a broker error), or was cancelled (its partition revoked) and the
generator is closed (by `Stream.on_stop`, or the garbage collector). faust's supervisor then
restarts the actor on the same stream, which goes on with the next events: the failed batch is
never delivered again in this process, and its offsets, acknowledged, are committed. The records
of the batch that were not folded yet were lost for good — a range of one partition's offsets,
with every count after it exact, since the watermarks (tables/partial.py) only skip what is at
or below what was folded.

`take_batches` is faust's `take_events` (faust-streaming 0.15.3) with one change: the events of
a batch are acknowledged when the agent asks for the next batch, that is after its body ran to
the end; a batch the agent left by an exception, a cancellation or a close stays unacknowledged,
so its offsets are not committed and a restarted worker reads it again (streams/agent.py stops
the worker when an actor fails)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, cast

from faust import Stream
from faust.types import EventT, StreamT
from mode.utils.futures import notify


def take_batches(stream: StreamT, max_: int, within: float) -> AsyncGenerator[list[EventT], None]:
    """At most `max_` events at a time, or what arrived within `within` seconds."""
    agen = _take_batches(cast(Stream, stream), max_, within)
    # Stream.on_stop closes the buffering generators left open, as it does faust's own
    cast(Any, stream)._active_agens.add(agen)
    return agen


async def _take_batches(stream: Stream, max_: int, within: float) -> AsyncGenerator[list[EventT], None]:
    events: list[EventT] = []
    buffer_full = asyncio.Event()
    buffer_consumed = asyncio.Event()
    buffer_consuming: asyncio.Future[None] | None = None
    channel_it = aiter(stream.channel)

    async def add_to_buffer(value: Any) -> Any:
        # the stream's processor: runs in its passive drainer, once per event
        nonlocal buffer_consuming
        try:
            if buffer_consuming is not None:  # a batch is being processed: wait for it
                try:
                    await buffer_consuming
                finally:
                    buffer_consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("Take buffer found current_event is None")
            events.append(event)
            if len(events) >= max_:
                buffer_full.set()
                buffer_consumed.clear()
                await stream.wait(buffer_consumed)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    stream_enable_acks = stream.enable_acks
    stream.enable_acks = False  # the events are acknowledged here, batch by batch
    stream.add_processor(add_to_buffer)
    stream._enable_passive(cast(Any, channel_it))
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(buffer_full, timeout=within)  # type: ignore[arg-type]
            if not events:
                continue
            batch = list(events)
            events.clear()
            buffer_consuming = asyncio.get_running_loop().create_future()
            try:
                yield batch
                # the agent asks for the next batch: it has processed this one
                for event in batch:
                    await stream.ack(event)
            finally:
                # processed or not, the drainer may add to the buffer again
                notify(buffer_consuming)
                buffer_full.clear()
                buffer_consumed.set()
    finally:
        stream.enable_acks = stream_enable_acks
        stream._processors.remove(add_to_buffer)
