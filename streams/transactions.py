"""faust's transaction manager (processing_guarantee exactly_once), made to commit what it wrote.

faust-streaming 0.15.3 keeps one transactional producer per (co-partitioned topic group,
partition) this worker is assigned, `{app id}-{group}-{partition}`, routes every message to the
producer of its *destination* partition, and at each commit commits the transactions of the
partitions whose input offsets it commits, with those offsets. Five defects, read in its code
and fixed in this subclass; the SIGKILL crash test on Apache Kafka (tests/integration/test_any_partitioner.py)
failed until the first two were:

1. Its commit does not flush the producer buffer first (its at-least-once commit does). Table
   writes wait in that buffer (`send_soon`), so the offsets of acknowledged events could commit
   while their writes were still there: the writes went into the next transaction, and a crash
   before it committed lost them, with nothing left to replay them. The buffer is handed over
   first now.
2. A transaction with no input offsets of its own is never committed: that of the global tables'
   one-partition changelogs (baselines, run status) stays open until a restarted worker fences
   it or the broker's transaction timeout aborts it (measured: after the crash the baselines
   changelog held two aborted records and no committed one: the restarted worker binned without
   baselines, which voids histograms counted with them, and predictions went missing). Writes to
   a partition without input of its own for a while (a weekly run's snapshot requests) would
   stay invisible to read_committed consumers the same way. Every open transaction is committed
   at each commit now.
3. A message to a partition this worker is not assigned has no producer and fails ("No
   transaction producer found": another worker's partition, e.g. the weekly run's fan-out). It
   goes through the plain producer, at least once, like every message to a topic the worker
   does not consume (which faust already sends outside transactions: the output topics, DLQs).
4. faust commits transactions only when some input offset moved. Writes made after the last
   such commit (a quiet partition's timers, the tail of the input) stayed in an open
   transaction: invisible to read_committed readers (their last stable offset stops in front
   of it), and aborted by the broker's transaction timeout after a clean stop, whose final
   commit had no offsets either. The consumer (streams/transport.py) now commits the open
   transactions at every commit interval and at stop, offsets or not (`commit_open`).

5. Defect 2's fix committed those other transactions *after* the input offsets: a worker killed
   between the two had committed the offsets of events whose writes were then aborted. Seen on
   Apache Kafka (the exactly-once SIGKILL test, on a loaded machine): the baselines are a global
   table, whose one-partition changelog is written in a transaction of its own, not in that of
   the baselines topic's partition the record came from; the kill came after the offsets
   commit, the changelog's transaction was aborted, and the restarted worker, which never read
   the baselines again, binned every feature without them. Now every write an event made is
   committed before its offset is: the plain producer (dead letters, outputs) is flushed and
   the other transactions committed first. A crash between the two leaves writes ahead of their
   offsets, which a replay rewrites harmlessly (the watermarks below; a baseline is the same
   record again).

A sixth thing is the project's own: a record forwarded to the partition its predictionId hashes
to (streams/repartition.py) is sent in its *source* partition's transaction (`send_for_source`),
so it commits with the source offset it was read at.

What remains exactly once: a source partition's changelog writes and its input offsets commit
together, and a crashed worker's uncommitted writes are never read (read_committed). Writes may
still commit ahead of their input offsets (a commit does not wait for a batch in progress), so
the applied-offset watermarks stay what makes a replay harmless, as at least once."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import cast

from faust.transport.consumer import TransactionManager as FaustTransactionManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP, RecordMetadata
from faust.types.tuples import HeadersArg

from model_monitoring.streams.producer_buffer import publish_pending


class TransactionManager(FaustTransactionManager):
    """faust's transaction manager with the fixes of the module doc."""

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        """Commit `offsets`, each in its partition's transaction, *after* everything else the
        events before them wrote: the plain producer's messages flushed, and the transactions
        without offsets of their own committed (defect 5 of the module doc)."""
        await self.hand_over_buffered()
        plain = self._producer()._producer
        if plain is not None:
            await plain.flush()
        with_offsets = {self._transactional_id(tp.topic, tp.partition) for tp in offsets}
        await self.commit_the_others({t for t in with_offsets if t is not None}, start_new_transaction)
        return await super().commit(offsets, start_new_transaction=start_new_transaction)

    async def hand_over_buffered(self) -> None:
        """Publish every message waiting in faust's producer buffer now, in order. A message the
        buffer's task already took is no longer in the queue: it reaches its transaction's lock
        without suspending, so it is in the transaction before the commit takes that lock."""
        await publish_pending(cast(ProducerBuffer, self.app.producer.buffer))

    async def commit_open(self, start_new_transaction: bool) -> None:
        """Commit every open transaction: for a commit with no input offsets to commit."""
        await self.hand_over_buffered()
        await self.commit_the_others(set(), start_new_transaction)

    async def commit_the_others(self, done: set[str], start_new_transaction: bool) -> None:
        """Commit the open transactions that had no offsets to commit (an empty one costs no
        request: aiokafka completes it locally)."""
        producer = self._producer()
        for transactional_id, transactional in list(producer._transaction_producers.items()):
            if transactional_id in done:
                continue
            async with producer._trn_locks[transactional_id]:
                # none open: already ended by the stop's first commit, or a failed begin
                txn = transactional._txn_manager
                if txn is None or not txn.is_in_transaction():
                    continue
                await transactional.commit_transaction()
                if start_new_transaction:
                    await transactional.begin_transaction()

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   timestamp: float | None, headers: HeadersArg | None, *,
                   transactional_id: str | None = None) -> Awaitable[RecordMetadata]:
        """faust's routing (the destination partition's transaction), except to a partition
        without a transactional producer here: that message goes through the plain producer."""
        p = self.consumer.key_partition(topic, key, partition)
        tid = None
        if p is not None:
            tid = self._transactional_id(topic, p)
            if tid not in self._producer()._transaction_producers:
                tid = None
        return await self.producer.send(topic, key, value, p, timestamp, headers, transactional_id=tid)

    async def send_for_source(self, source_topic: str, source_partition: int, topic: str,
                              key: bytes | None, value: bytes | None, partition: int,
                              headers: HeadersArg | None) -> Awaitable[RecordMetadata]:
        """A message produced on behalf of a source partition: in that partition's transaction
        (with the plain producer if this worker no longer has it: the partition was revoked, and
        its next owner reads the records again)."""
        tid = self._transactional_id(source_topic, source_partition)
        if tid not in self._producer()._transaction_producers:
            tid = None
        return await self.producer.send(topic, key, value, partition, None, headers, transactional_id=tid)

    def _transactional_id(self, topic: str, partition: int) -> str | None:
        try:
            group = self.app.assignor.group_for_topic(topic)
        except KeyError:  # not a topic this worker consumes
            return None
        return f"{self.app.conf.id}-{group}-{partition}"

    def _producer(self) -> faust_aiokafka.Producer:
        # the transactional producers are the aiokafka driver's (private to faust: no public API)
        return cast(faust_aiokafka.Producer, self.producer)
