"""The RocksDB store of every table (streams/partitioned.py) on a real RocksDB: a rebalance
that takes nothing from a store runs no garbage collection (faust collected on every store on
every rebalance, ~1 s of stopped worker at start-up), and one that does closes the partition's
database as faust does, so that the partition, assigned again, reopens it with its data."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP

from model_monitoring.streams.partitioned import PartitionKeyedRocksDBStore


@pytest.fixture
def table(tmp_path: Path) -> Any:
    app = faust.App("partitioned-store", broker="memory://", store="mmrocksdb://", datadir=str(tmp_path))
    return app.Table("t", partitions=4)


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    """The generation-2 collections that start while the test runs."""
    seen: list[int] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append(2)

    gc.callbacks.append(callback)
    try:
        yield seen
    finally:
        gc.callbacks.remove(callback)


def changelog(table: Any, partition: int) -> TP:
    return TP(table.changelog_topic.get_topic_name(), partition)


def test_a_rebalance_that_takes_nothing_from_the_store_collects_no_garbage(
        table: Any, full_collections: list[int]) -> None:
    store = table.data
    assert isinstance(store, PartitionKeyedRocksDBStore)
    store._set(b"0|a", b"1")  # noqa: SLF001 - opens partition 0's database
    store.revoke_partitions(table, set())
    store.revoke_partitions(table, {changelog(table, 3)})           # never held here
    store.revoke_partitions(table, {TP("another-table-changelog", 0)})  # another table's
    assert full_collections == []
    assert sorted(store._dbs) == [0]  # noqa: SLF001


def test_a_revoked_partition_closes_its_database_and_reopens_it_with_its_data(
        table: Any, full_collections: list[int]) -> None:
    store = table.data
    store._set(b"0|a", b"1")  # noqa: SLF001
    store._set(b"1|b", b"2")  # noqa: SLF001
    store.revoke_partitions(table, {changelog(table, 0), changelog(table, 2)})
    assert full_collections == [2]  # faust's collection, once: the handle is closed
    assert sorted(store._dbs) == [1]  # noqa: SLF001
    # assigned again: RocksDB reopens the directory (it would refuse while the old handle held
    # its lock) and the entry written before the revoke is there
    assert dict(store.partition_items(0)) == {}
    store._db_for_partition(0)  # noqa: SLF001
    assert dict(store.partition_items(0)) == {b"0|a": b"1"}
    assert dict(store.partition_items(1)) == {b"1|b": b"2"}
