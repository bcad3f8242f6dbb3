"""Tables whose keys carry their partition: b"{partition}|…".

Faust picks a changelog partition from the *current event*, which does not exist inside
`take_events` batches (faust-streaming #497), and its RocksDB store picks the local database
the same way. Every key this service writes starts with the source partition it belongs to, so
both choices are read off the key instead: a partial stays on its source partition through
crashes and rebalances, whatever task writes it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.globaltable import GlobalTable
from faust.tables.table import Table

from model_monitoring.tables.keys import partition_of, partition_prefix


def partition_items(table: Any, partition: int) -> Iterator[tuple[bytes, bytes]]:
    """A partition's (key, value) pairs: straight from its own database with the RocksDB store,
    by key prefix otherwise (the memory store of tests)."""
    store = table.data
    if isinstance(store, PartitionKeyedRocksDBStore):
        yield from store.partition_items(partition)
        return
    prefix = partition_prefix(partition)
    for key, value in table.items():
        if key.startswith(prefix):
            yield key, value


class PartitionKeyedTable(Table):
    """A faust Table whose changelog partition is the one named in the key."""

    def partition_for_key(self, key: Any) -> int | None:
        return partition_of(key)


class PartitionKeyedRocksDBStore(RocksDBStore):
    """RocksDB store (one database per partition) that files a key under its own partition."""

    def partition_items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """The entries of one partition's database (one scan per partition, not of them all)."""
        db = self._dbs.get(partition)
        if db is not None:
            yield from self._visible_items(db)

    def _set(self, key: bytes, value: bytes | None) -> None:
        partition = partition_of(key)
        db = self._db_for_partition(partition)
        self._key_index[key] = partition
        db.put(key, value)


class PartitionKeyedGlobalTable(PartitionKeyedTable, GlobalTable):
    """The same rule for a GlobalTable (every worker holds every partition)."""
