"""The worker's table writers wait out a rebalance: no table write between a revocation and the
end of the table recovery that follows it.

Why: faust (0.15.3) does not wait for a stream's work in progress at a revocation (the service
runs with `stream_wait_empty=False`: a batch holds its events unacknowledged until the next one
is taken, streams/batches.py, so faust's wait for every acknowledgement would only time out), and
a partition the worker keeps through the rebalance keeps its actor. So a batch folded while the
rebalance went on wrote its join entries and partials while table recovery was reading the
changelogs: recovery reads from the offset last acknowledged before it started, and applied an
older changelog record of a key over the batch's newer local write, whose own record lay past
the end recovery reads to. The local value went back; the batch's records were acknowledged and
committed; the next batches built on the old value. Outcomes were lost that way after a broker
stall that ended the worker's session (issue 10, seen with a trace of every delivery,
acknowledgement, commit, seek and clearing of the stream queues).

The gate: the consumer closes it when partitions are revoked and waits (bounded) for the writers
inside it to finish, before faust revokes anything, so their writes are in the producer buffer
that recovery flushes before it reads; the recovery opens it again once it is done, before the
streams resume (streams/recovery.py). A writer that comes to a closed gate waits there and then
works on the recovered tables. Every agent that writes tables runs its handler inside it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from weakref import WeakKeyDictionary


class WriteGate:
    """Open between rebalances; `writing()` is the section that may write tables."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._busy = 0
        self.generation = 0  # rebalances the gate has been through: one more at each reopening

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    @property
    def busy(self) -> int:
        """Writers inside the gate now."""
        return self._busy

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        if not self._open.is_set():
            self.generation += 1
        self._open.set()

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """Enter once the gate is open (waiting while it is closed); a closing gate waits for
        this section to end."""
        while not self._open.is_set():
            await self._open.wait()
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no writer is inside; False if some still are after `timeout` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


_GATES: WeakKeyDictionary[Any, WriteGate] = WeakKeyDictionary()


def write_gate(app: Any) -> WriteGate:
    """The app's gate (one per faust app)."""
    gate = _GATES.get(app)
    if gate is None:
        gate = _GATES[app] = WriteGate()
    return gate
