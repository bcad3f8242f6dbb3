"""faust's producer buffer drained for real before input offsets commit (at least once).

faust queues every table write's changelog message in `Producer.buffer` (`send_soon`: a table
`__setitem__` cannot await), and a task of the buffer hands them to the Kafka client one by one.
Its at-least-once commit flushes the producer before committing offsets, but
`ProducerBuffer.flush` (faust-streaming 0.15.3) waits for that task at most 0.1 s per message and
*returns* at the first wait that times out, with messages still queued. On a loaded machine a
send takes longer than that (the client waits for room in a full batch), the commit went ahead,
and a worker killed before the queue emptied had committed the offsets of events whose table
writes were lost with it: the restarted worker never read them again, and the state was short
of those records for good (the SIGKILL crash test on Apache Kafka, since merged into test_any_partitioner.py: "partials
differ", the stream a few predictions short per key).

`drain` puts a barrier at the end of the queue and waits for the task to reach it: the task sends
in order, so every message queued before the barrier has then been handed to the client, whose
own flush (called by the commit right after) waits until the broker has them. exactly_once
hands the buffer over in its own commit (streams/transactions.py, defect 1)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.transport.producer import ProducerBuffer


class _Barrier:
    """Stands in the buffer's queue where a `FutureMessage` would; the buffer's task "publishes"
    it through `message.channel.publish_message`, which resolves `reached`."""

    __slots__ = ("reached",)

    def __init__(self, reached: asyncio.Future[None]) -> None:
        self.reached = reached

    @property
    def message(self) -> _Barrier:
        return self

    @property
    def channel(self) -> _Barrier:
        return self

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        if not self.reached.done():
            self.reached.set_result(None)


async def drain(buffer: ProducerBuffer, timeout: float) -> bool:
    """True once every message queued in `buffer` before the call was handed to the Kafka client,
    in order; False if the buffer's task did not get there within `timeout` seconds."""
    if buffer.state != "running":
        # no task to hand them over (not started, or stopping): publish what waits, in order
        await publish_pending(buffer)
        return True
    reached: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    buffer.pending.put_nowait(_Barrier(reached))
    try:
        await asyncio.wait_for(asyncio.shield(reached), timeout)
    except TimeoutError:
        return False
    return True


async def publish_pending(buffer: ProducerBuffer) -> None:
    """Publish every message waiting in `buffer` now, in order, here instead of in the buffer's
    task. A message the task already took is no longer in the queue: the task hands it over."""
    pending = buffer.pending
    while not pending.empty():
        fut = pending.get_nowait()
        await fut.message.channel.publish_message(fut, wait=False)
        buffer.message_sent.set()


log = logging.getLogger("model_monitoring.producer")

DURABLE_WAIT = 10.0  # seconds per drain attempt, and a warning each time it runs out
DURABLE_ATTEMPTS = 12


async def flush_durably(app: Any) -> None:
    """Every message sent or queued before the call is with the broker: the ordering barrier of
    "this table write before that event". faust's `producer.flush()` alone is not one: its buffer
    flush returns with table writes still queued when a send waits longer than 0.1 s (a loaded
    machine, a full batch), and an event sent after it could reach the broker before the write it
    must follow — killed in between, a restarted worker found no publishing mark and published
    the run's events again. Drained (`drain`) and then flushed; a buffer that does not drain in
    DURABLE_ATTEMPTS × DURABLE_WAIT seconds is a broker problem: RuntimeError (the input is
    redelivered after the restart), never an event out of order."""
    buffer = getattr(app.producer, "buffer", None)
    if buffer is None or buffer.state != "running":
        # no buffer task to overtake (a producer without one, or not running): its own flush
        # publishes what waits, or says why it cannot
        await app.producer.flush()
        return
    for attempt in range(1, DURABLE_ATTEMPTS + 1):
        if await drain(buffer, timeout=DURABLE_WAIT):
            break
        log.warning("the producer buffer has not drained after %.0f s (%d queued)",
                    attempt * DURABLE_WAIT, buffer.size)
    else:
        raise RuntimeError(f"the producer buffer did not drain in {DURABLE_ATTEMPTS * DURABLE_WAIT:.0f} s")
    await app.producer.flush()
