"""Table recovery that seeks the stream partitions before it resumes them.

Why: at the end of a rebalance faust's `Recovery` (faust-streaming 0.15.3, `on_recovery_completed`
and `_resume_streams`) resumes the stream partitions, then awaits `perform_seek` (a round trip to
the group coordinator), then calls `app.flow_control.resume()`. Flow is already active by then
(it was resumed for the changelog reads), so while the seek is awaited the fetcher reads the
resumed partitions and the drain loop delivers their first records into the actors' stream
queues; and `FlowControlEvent.resume()` clears every managed queue, even when flow was already
active. The records in the queues at that moment are dropped: never processed, never acknowledged,
and never read again in this process (the drain loop's read offsets are past them). faust commits
a partition only from the offset after its last commit on, so the hole stops that partition's
commits for good: the restarted worker went on folding everything after the hole while its lag
never fell ("offsets of … cannot commit: committed 4, lowest acknowledged 18", issue 10; the
records 4-17 of each partition had been cleared from the queue, seen with a trace of every
delivery and acknowledgement).

Here the stream partitions are resumed after the seek, in the same synchronous step as the
`flow_control.resume()` and `resume_flow()` that follow: no record of a stream partition can be
delivered between its seek and the clearing of the queues, so the clearing drops only what was
queued before the rebalance. The rest is faust's code, line for line.

Installed through faust's `TableManager` setting (`streams/app.py`)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.tables import TableManager as FaustTableManager
from faust.tables.recovery import Recovery as FaustRecovery

from model_monitoring.streams.write_gate import write_gate


class Recovery(FaustRecovery):
    """faust's table recovery; stream partitions are resumed only once seeked (module note)."""

    async def _seek_then_resume_streams(self) -> None:
        """Seek the assigned partitions to their committed offsets, then resume the stream
        partitions and the flow, with no await in between."""
        consumer = self.app.consumer
        assignment = consumer.assignment()
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        write_gate(self.app).open()  # the tables are recovered: writers go on (streams/write_gate.py)
        if assignment:
            consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        else:
            self.log.info("Resuming streams with empty assignment")
        self.completed.set()
        self.log.info("Resuming flow...")
        self.app.flow_control.resume()
        consumer.resume_flow()
        # finally make sure the fetcher is running.
        await cast(Any, self.app)._fetcher.maybe_start()

    async def _resume_streams(self, generation_id: int = 0) -> None:
        await self.app.on_rebalance_complete.send()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again")
            return
        await self._seek_then_resume_streams()
        self.tables.on_actives_ready()
        self.tables.on_standbys_ready()
        cast(Any, self.app).on_rebalance_end()
        self.log.info("Worker ready")

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callback_coros = [
            asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table],
                                                              self.standbys_for_table[table]))
            for table in self.tables.values()
        ]
        if callback_coros:
            await asyncio.wait(callback_coros)
        if self.app.consumer_generation_id != generation_id:
            self.log.warning(f"Recovery rebalancing again app id "
                             f"{self.app.consumer_generation_id} param {generation_id}")
            return
        await self._seek_then_resume_streams()
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        cast(Any, self.app).on_rebalance_end()
        self.log.info("Worker ready")


class TableManager(FaustTableManager):
    """faust's table manager, with the project's `Recovery`."""

    @property
    def recovery(self) -> FaustRecovery:
        if self._recovery is None:
            self._recovery = Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
