"""The join state at run time: the `join_log` table and, per active partition, its local index.

The ingest fold reads a prediction's join entry from the index and writes the entries it changed
as batches to the log (`tables/join_log.py`): one changelog message per batch of up to 256 KiB,
not one per prediction. The index (join key -> (batch seq, last touch, entry)) is RocksDB on disk, one
database per partition under the data directory (90 days of predictions do not belong in memory;
the memory store of tests and throwaway runs keeps it in a dict). It is derived state: built
from the partition's batches, which faust restored from the changelog, on the partition's first
fold after it was assigned, and dropped when the partition is revoked or reassigned. A worker
starting over wipes what an earlier process left, so the index never outlives the log it came
from.

Entries of the previous release's `join_buffer` table (one table entry per prediction) are moved
into the log on that first fold: written as batches, flushed, then deleted from the old table.
An entry the log already has is not moved: after a crash between the two steps the old copy is
only deleted, never written over the log's (perhaps newer) version."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from faust.types import TP
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from model_monitoring.streams.partitioned import PartitionKeyedTable, partition_items
from model_monitoring.streams.producer_buffer import flush_durably
from model_monitoring.tables.join_buffer import JoinEntry
from model_monitoring.tables.join_log import (
    Entry,
    JoinExpiry,
    batches_of,
    entry_bytes,
    entry_of,
    index_value,
    plan_expiry,
    rebuild,
)
from model_monitoring.tables.keys import JoinBatchKey

log = logging.getLogger("model_monitoring.joins")

Items = Callable[[int], Iterable[tuple[bytes, bytes]]]  # a table's (key, value) pairs of one partition


class JoinIndex(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def write(self, puts: Sequence[tuple[bytes, bytes]], deletes: Sequence[bytes] = ()) -> None: ...

    def items(self) -> Iterator[tuple[bytes, bytes]]: ...

    def close(self) -> None: ...


class MemoryIndex:
    """The index in a dict: for the memory store, whose tables are in memory too."""

    def __init__(self) -> None:
        self._d: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._d.get(key)

    def write(self, puts: Sequence[tuple[bytes, bytes]], deletes: Sequence[bytes] = ()) -> None:
        self._d.update(puts)
        for key in deletes:
            self._d.pop(key, None)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self._d.items()))

    def close(self) -> None:
        self._d.clear()


class RocksIndex:
    """The index in its own RocksDB database, made afresh (whatever was at `path` is wiped).
    No write-ahead log: after a crash the index is rebuilt from the log anyway."""

    def __init__(self, path: Path) -> None:
        self.path = path
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), Options(raw_mode=True))
        self._write_options = WriteOptions()
        self._write_options.disable_wal = True  # type: ignore[assignment,method-assign]  # a property (the stub says method)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def write(self, puts: Sequence[tuple[bytes, bytes]], deletes: Sequence[bytes] = ()) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in puts:
            batch.put(key, value)
        for key in deletes:
            batch.delete(key)
        self._db.write(batch, self._write_options)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        items: Iterable[tuple[bytes, bytes]] = self._db.items()  # type: ignore[assignment]
        return iter(items)

    def close(self) -> None:
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class _Partition:
    index: JoinIndex
    batches: set[int] = field(default_factory=set)  # the seqs of the partition's batches
    next_seq: int = 0


class JoinStore:
    """A worker's join state: `ensure` a partition before its fold reads (`get`) and writes
    (`append`); `expire` on the maintenance timer; `forget` at a rebalance."""

    def __init__(self, log_table: MutableMapping[bytes, bytes], log_items: Items,
                 flush: Callable[[], Awaitable[None]], index_dir: Path | None = None,
                 legacy_table: MutableMapping[bytes, bytes] | None = None,
                 legacy_items: Items | None = None) -> None:
        self.log_table = log_table
        self.log_items = log_items
        self.flush = flush
        self.index_dir = index_dir
        self.legacy_table = legacy_table
        self.legacy_items = legacy_items
        self.ready: dict[int, _Partition] = {}
        self._wiped = False

    def _open(self, partition: int) -> JoinIndex:
        if self.index_dir is None:
            return MemoryIndex()
        if not self._wiped:  # an earlier process's indexes: stale by definition
            shutil.rmtree(self.index_dir, ignore_errors=True)
            self._wiped = True
        return RocksIndex(self.index_dir / f"p{partition}")

    async def ensure(self, partition: int, high_water_ms: int, ttl_ms: int) -> None:
        """The partition's index, rebuilt from its batches if the partition was not indexed since
        it was assigned; the previous release's entries moved into the log."""
        if partition in self.ready:
            return
        started = time.perf_counter()
        batches = sorted(((JoinBatchKey.decode(key).seq, value) for key, value in self.log_items(partition)),
                         key=lambda b: b[0])
        index = self._open(partition)
        entries = rebuild(batches, high_water_ms, ttl_ms)
        index.write(list(entries.items()))
        seqs = {seq for seq, _ in batches}
        part = self.ready[partition] = _Partition(index, seqs, max(seqs, default=-1) + 1)
        moved = await self._migrate(partition, part)
        log.info("join index of partition %d: %d entries from %d batches in %.2fs%s", partition,
                 len(entries), len(batches), time.perf_counter() - started,
                 f"; {moved} entries moved from the join_buffer table" if moved else "")

    async def _migrate(self, partition: int, part: _Partition) -> int:
        if self.legacy_table is None or self.legacy_items is None:
            return 0
        old = list(self.legacy_items(partition))
        if not old:
            return 0
        fresh = [entry_of(key, JoinEntry.from_bytes(value)) for key, value in old if part.index.get(key) is None]
        self.append(partition, fresh)
        await self.flush()  # in the log before they leave the old table
        for key, _ in old:
            self.legacy_table.pop(key, None)
        return len(fresh)

    def get(self, partition: int, key: bytes) -> bytes | None:
        """The entry bytes of a join key of an ensured partition, or None."""
        raw = self.ready[partition].index.get(key)
        return entry_bytes(raw) if raw is not None else None

    def append(self, partition: int, entries: Iterable[Entry]) -> int:
        """Write entries (join key, last touch, entry bytes: `entry_of`; each key once) to the log as batches, and to the
        index; returns the number of batches (changelog messages)."""
        part = self.ready[partition]
        batches = batches_of(entries)
        for batch in batches:
            seq = part.next_seq
            part.next_seq += 1
            self.log_table[JoinBatchKey(partition, seq).encode()] = batch.to_bytes()
            part.batches.add(seq)
            part.index.write([(key, index_value(seq, seen, value)) for key, seen, value in batch.entries])
        return len(batches)

    async def expire(self, partition: int, high_water_ms: int, ttl_ms: int) -> JoinExpiry:
        """Delete the partition's entries past the TTL and grace, then the batches no live entry
        is in. The producer is flushed first: the mark the plan read is in the changelog before
        anything it decided leaves (a rebuild after a crash reads a mark no lower)."""
        part = self.ready[partition]
        plan = plan_expiry(part.index.items(), sorted(part.batches), high_water_ms, ttl_ms)
        if plan.expired or plan.dropped:
            await self.flush()
            part.index.write([], [key for key, _ in plan.expired])
            for seq in plan.dropped:
                self.log_table.pop(JoinBatchKey(partition, seq).encode(), None)
                part.batches.discard(seq)
        return plan

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the indexes of partitions revoked or newly assigned: rebuilt on their next fold."""
        for partition in partitions:
            part = self.ready.pop(partition, None)
            if part is not None:
                part.index.close()

    def close(self) -> None:
        self.forget(list(self.ready))


class JoinLogTable(PartitionKeyedTable):
    """The `join_log` table; tells the join store which partitions a rebalance revoked or newly
    assigned, whose indexes are then stale."""

    on_partitions_changed: Callable[[set[int]], None] | None = None

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        if self.on_partitions_changed is not None:
            self.on_partitions_changed({tp.partition for tp in revoked | newly_assigned})


def create_join_store(app: Any, log_table: JoinLogTable, legacy_table: Any, index_dir: Path | None) -> JoinStore:
    """The join store over the app's tables, told of every rebalance by the log table."""
    async def flush() -> None:
        await flush_durably(app)

    store = JoinStore(log_table, lambda p: partition_items(log_table, p), flush, index_dir,
                      legacy_table, lambda p: partition_items(legacy_table, p))
    log_table.on_partitions_changed = store.forget
    return store
