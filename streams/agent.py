"""The project's faust Agent: a revoked partition's actor stops, and stays stopped.

faust-streaming (0.15.3) stops the actor of a revoked isolated partition by cancelling its task. The task's
CancelledError reaches `Agent._execute_actor`, which logs "Restarting on rebalance", marks the
actor crashed (an ERROR line, `Crashed reason=CancelledError()`) and wakes the supervisor. The
actor is still in the supervisor's list, so the supervisor replaces it with a new actor on the
revoked partition's stopped stream; that one is cancelled again, and so on. After enough
rebalances the supervisor's budget (100 restarts a second) runs out, and it raises
`SystemExit(1)`: a healthy worker exits because another one joined or left the group
(faust-streaming/faust#529).

Here a revoked actor leaves the supervisor before it is cancelled, and its cancellation ends it
as the stop it is: no crash, no restart, no ERROR line.

Anything else an actor raises stops the worker (`App.crash`: it exits non-zero) instead of
faust's supervisor restart. The restarted actor would read on from the same stream, after the
batch that failed: that batch is never delivered again in this process, and once the records
after it are acknowledged the commit passes over it (at once on a partition the group never
committed, where faust's commit does not look for a hole at the head), so its unfolded records
were lost. The batch stays unacknowledged (streams/batches.py), and the next worker reads it
again from the committed offset, where the watermarks make the replay harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any
from weakref import WeakSet

import faust
from faust.agents.agent import AgentTestWrapper as FaustAgentTestWrapper
from faust.types import TP
from faust.types.agents import ActorRefT, AgentT


class Agent(faust.Agent):
    """faust's Agent, with isolated-partition revocation as a stop (see the module's note)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._revoked: WeakSet[ActorRefT] = WeakSet()

    def clone(self, *, cls: type[AgentT] | None = None, **kwargs: Any) -> AgentT:
        # `test_context` clones into faust's AgentTestWrapper, a faust Agent: test this one's
        if cls is FaustAgentTestWrapper:
            cls = AgentTestWrapper
        return super().clone(cls=cls, **kwargs)

    async def on_isolated_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            aref = self._actor_by_partition.pop(tp, None)
            if aref is None:
                continue
            self._revoked.add(aref)
            if self.supervisor is not None:
                self.supervisor.discard(aref)
            await aref.on_isolated_partition_revoked(tp)

    async def _execute_actor(self, coro: Awaitable, aref: ActorRefT) -> None:
        await super()._execute_actor(self._until_revoked(coro, aref), aref)

    async def _until_revoked(self, coro: Awaitable, aref: ActorRefT) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            if aref in self._revoked and not self.should_stop:
                self.log.info("Stopped the actor of a revoked partition")
                return
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: the worker stops (module note)
            if self.supervisor is not None:
                self.supervisor.discard(aref)  # not restarted on the stream it failed on
            if self._on_error is not None:
                await self._on_error(self, exc)
            await aref.crash(exc)
            await self.app.crash(exc)


class AgentTestWrapper(Agent, FaustAgentTestWrapper):
    """faust's unit-testing wrapper (`agent.test_context()`) around the project's Agent."""
