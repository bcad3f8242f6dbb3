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

`take_batches` acknowledges the events of a batch when the agent asks for the next batch, that
is after its body ran to the end; a batch the agent left by an exception, a cancellation or a
close stays unacknowledged, so its offsets are not committed and a restarted worker reads it
again (streams/agent.py stops the worker when an actor fails).

How: it reads the stream's channel queue itself — the queue faust's conductor puts each event
in — and does, per event, only what the stream's own iterator (faust-streaming 0.15.3
`Stream._py_aiter`, and its compiled twin) does that matters here: skip the events of an older
consumer generation or delivered while flow is stopped (a rebalance: acknowledged, as faust
does, and not processed), and track the message of an acking topic as unacknowledged (what
`Consumer.track_message` does; the offsets committed are the acknowledged ones). It leaves out
faust's per-event machinery that the batch does not use — the stream's passive drainer task,
its processor chain, the current-event context (this service's tables take their partition from
the key: streams/partitioned.py) and the per-event sensor calls (nothing here reads faust's
Monitor sensor; the service's metrics are its own) — which cost the worker more CPU per single-
record message than the fold (bench/ingest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, cast

from faust import Stream
from faust.types import EventT, StreamT

# While a batch fills, the queue's length is looked at this often: the conductor puts events
# in without a signal, and a wake-up per event would cost more than the event.
FILL_POLL_SECONDS = 0.005


def take_batches(stream: StreamT, max_: int, within: float) -> AsyncGenerator[list[EventT], None]:
    """At most `max_` events at a time, or what arrived within `within` seconds."""
    agen = _take_batches(cast(Stream, stream), max_, within)
    # Stream.on_stop closes the buffering generators left open, as it does faust's own
    cast(Any, stream)._active_agens.add(agen)
    return agen


async def _take_batches(stream: Stream, max_: int, within: float) -> AsyncGenerator[list[EventT], None]:
    channel: Any = aiter(stream.channel)  # the iterating clone: a topic's is the conductor's
    queue = channel.queue
    app = stream.app
    consumer = app.consumer
    flow_active = app.flow_control.is_active
    acking_topics = app.topics.acking_topics
    add_unacked = consumer.unacked.add
    loop = asyncio.get_running_loop()

    def admit(events: list[EventT], event: EventT) -> None:
        message = event.message
        # the generation now, not when the batch began: a rebalance may come between two events
        if not flow_active() or message.generation_id != app.consumer_generation_id:
            event.ack()  # skipped, and acknowledged, as the stream's iterator does
            return
        if message.topic in acking_topics and not message.tracked:
            message.tracked = True
            add_unacked(message)
        events.append(event)

    def take_queued(events: list[EventT]) -> None:
        get = queue.get_nowait  # raises what was thrown into the channel
        while len(events) < max_ and not queue.empty():
            admit(events, get())

    started_by_us = await stream.maybe_start()
    try:
        while not stream.should_stop:
            events: list[EventT] = []
            deadline = loop.time() + within
            while len(events) < max_ and not stream.should_stop:
                take_queued(events)
                remaining = deadline - loop.time()
                if len(events) >= max_ or remaining <= 0:
                    break
                if not events and queue.empty():
                    # idle: one wait for the first event (or the deadline, or the stop)
                    got = await stream.wait_first(queue.get(), timeout=remaining)
                    if got.results and not stream.should_stop:
                        admit(events, got.results[0])
                    continue
                # filling: look again shortly, unless the queue already holds the rest (events
                # leave the queue as they are taken, so a batch may be larger than the queue)
                if len(events) + queue.qsize() < max_:
                    await asyncio.sleep(min(FILL_POLL_SECONDS, remaining))
            if not events or stream.should_stop:
                continue  # stopping: what was taken stays unacknowledged
            yield events
            # the agent asks for the next batch: it has processed this one
            for event in events:
                event.ack()
    except StopAsyncIteration:
        # the channel ended (faust throws this into its queue when the app stops): the
        # stream's iterator returns there, and so does this; what was taken stays
        # unacknowledged
        return
    finally:
        stream._channel_stop_iteration(channel)
        if started_by_us:
            await stream.stop()
            stream.service_reset()
