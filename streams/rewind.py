"""After a rebalance every input partition resumes from its committed offset, or from the
start when the group has committed none for it yet.

Why: while a rebalance and table recovery are under way, faust's consumer can read records of
the newly assigned partitions and drop them (flow stopped, partition paused, generation
changed), counting on `perform_seek` to go back to the committed offsets when the worker
resumes. aiokafka's `seek_to_committed` only seeks partitions whose committed offset is above
0; on a partition without one the dropped records were never read again — a worker that
starts, or restarts after a crash, before its group committed anything skipped them for good
(found by bench/reliability.py: a baseline never loaded with two workers; a restarted worker's
lag stuck). faust sends `on_rebalance_complete` just before that seek: this receiver seeks the
partitions without a committed offset to where `consumer_auto_offset_reset` says to start."""

from __future__ import annotations

import logging
from typing import Any, cast

import faust
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import ensure_aiokafka_TP

log = logging.getLogger("model_monitoring.rewind")


async def rewind_uncommitted(app: faust.App) -> list[Any]:
    """Seek the assigned input partitions the group has not committed (or committed at 0) to
    their beginning; returns them. Changelog partitions are the table recovery's own."""
    # the app's consumer is faust's Consumer; its interface type (ConsumerT) omits seek_to_committed
    consumer = cast(Consumer, app.consumer)
    if app.conf.consumer_auto_offset_reset != "earliest" or not consumer.assignment():
        return []
    changelogs = app.tables.changelog_topics
    committed = await consumer.seek_to_committed()
    uncommitted = sorted(tp for tp, offset in committed.items()
                         if not offset and tp.topic not in changelogs)
    if uncommitted:
        # offset 0; a log that no longer starts there is reset to its start (earliest)
        await consumer.seek_wait({ensure_aiokafka_TP(tp): 0 for tp in uncommitted})
        log.debug("rewound %d partitions without a committed offset", len(uncommitted))
    return uncommitted


def register(app: faust.App) -> None:
    # mode's SignalHandlerT alias accepts no function, not even one of its exact signature
    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def on_rebalance_complete(sender: Any, **kwargs: Any) -> None:
        await rewind_uncommitted(app)
