"""The join state as a log of batches (tables/join_log.py, streams/join_store.py).

The property that makes the design safe: whatever folds, expiries and restarts happen, the index
a worker reads from equals the one a rebuild from the log (the changelog) would give — so a crash
or a rebalance changes no join decision. Checked against a plain model (a dict of the latest
entry per key, expired entries removed), with the index in memory and in RocksDB."""

from __future__ import annotations

import asyncio
import math
import uuid
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_monitoring.streams.join_store import JoinStore
from model_monitoring.tables.expiry import LATE_OUTCOME_GRACE_MS, join_expiry
from model_monitoring.tables.join_buffer import JoinEntry, Prediction
from model_monitoring.tables.join_log import (
    BATCH_BYTES,
    Entry,
    JoinBatch,
    batches_of,
    latest_entries,
    split_index_value,
)
from model_monitoring.tables.keys import JoinBatchKey, JoinKey, partition_of

DAY = 86_400_000
TTL = 90 * DAY
KEYS = [JoinKey(0, f"pid-{i}").encode() for i in range(12)]


def entry(ts: int, offset: int) -> bytes:
    return JoinEntry(Prediction("acme", "churn", "3", "emea", ts, 0.25, ("f", offset, 0))).to_bytes()


def put(key: bytes, ts: int, offset: int) -> Entry:
    return key, ts, entry(ts, offset)


class Log(dict[bytes, bytes]):
    """The join_log table as a dict: what a changelog read to its end would hold."""

    def items_of(self, partition: int) -> list[tuple[bytes, bytes]]:
        return [(k, v) for k, v in self.items() if partition_of(k) == partition]


def store_over(log: Log, index_dir: Path | None, legacy: Log | None = None) -> JoinStore:
    async def flush() -> None:
        return None

    return JoinStore(log, log.items_of, flush, index_dir, legacy, legacy.items_of if legacy is not None else None)


def view(store: JoinStore) -> dict[bytes, bytes]:
    return {k: v for k in KEYS if (v := store.get(0, k)) is not None}


OPS = st.lists(st.one_of(
    st.tuples(st.just("fold"), st.lists(st.tuples(st.sampled_from(KEYS), st.integers(0, 40)), max_size=8)),
    st.tuples(st.just("advance"), st.integers(1, 60)),
    st.tuples(st.just("expire"), st.none()),
    st.tuples(st.just("restart"), st.none()),
), max_size=30)


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_the_live_index_is_what_a_rebuild_from_the_log_gives(backend: str, tmp_path: Path,
                                                             ops: list[tuple[str, object]]) -> None:
    index_dir = tmp_path / uuid.uuid4().hex if backend == "rocksdb" else None
    asyncio.run(_run(ops, index_dir))


async def _run(ops: list[tuple[str, object]], index_dir: Path | None) -> None:
    log = Log()
    store = store_over(log, index_dir)
    day = 130  # event time in days: the partition's mark
    await store.ensure(0, day * DAY, TTL)
    model: dict[bytes, bytes] = {}
    touched: dict[bytes, int] = {}  # each key's last touch so far: the fold never moves it back
    offset = 0

    def alive() -> dict[bytes, bytes]:
        return {k: v for k, v in model.items() if join_expiry(JoinEntry.from_bytes(v), day * DAY, TTL) is None}

    for op, arg in ops:
        if op == "fold":
            written: dict[bytes, Entry] = {}
            for key, days_ago in arg:  # type: ignore[attr-defined]
                offset += 1
                # a key's new version is touched no earlier than its last (tables/join_log.py: the
                # fold adds the later side of a pair and admits nothing older than the horizons)
                touched[key] = max((day - days_ago) * DAY, touched.get(key, 0))
                written[key] = put(key, touched[key], offset)
            store.append(0, written.values())
            model.update({key: value for key, _, value in written.values()})
        elif op == "advance":
            day += int(arg)  # type: ignore[call-overload]
        elif op == "expire":
            plan = await store.expire(0, day * DAY, TTL)
            model = alive()
            assert plan.live == len(model)
            assert not any(JoinBatchKey.decode(k).seq in plan.dropped for k in log)
        else:  # a crash or a rebalance: a new process rebuilds from the log alone
            store.close()
            store = store_over(log, index_dir)
            await store.ensure(0, day * DAY, TTL)
            model = alive()
        assert view(store) == model
    # whatever is live reads the same after one more rebuild
    store.close()
    fresh = store_over(log, index_dir)
    await fresh.ensure(0, day * DAY, TTL)
    assert view(fresh) == alive()
    # every batch left holds at least one live entry, after an expiry
    await fresh.expire(0, day * DAY, TTL)
    referenced = {split_index_value(raw)[0] for _, raw in fresh.ready[0].index.items()}
    assert {JoinBatchKey.decode(k).seq for k in log} == referenced
    fresh.close()


def test_an_expired_entry_does_not_come_back_from_an_older_batch() -> None:
    """Its newest version's batch is dropped while an older batch with its first version lives on
    (another entry keeps it): the rebuild must not bring the old version back."""
    async def run() -> None:
        log = Log()
        store = store_over(log, None)
        await store.ensure(0, 100 * DAY, TTL)
        a, b = KEYS[:2]
        store.append(0, [put(a, 10 * DAY, 1), put(b, 200 * DAY, 2)])  # seq 0: a, b
        store.append(0, [put(a, 11 * DAY, 3)])                         # seq 1: a again
        mark = 11 * DAY + TTL + LATE_OUTCOME_GRACE_MS + DAY                      # a expires, b lives
        plan = await store.expire(0, mark, TTL)
        assert [k for k, _ in plan.expired] == [a] and plan.dropped == [1]
        assert sorted(JoinBatchKey.decode(k).seq for k in log) == [0]
        again = store_over(log, None)
        await again.ensure(0, mark, TTL)
        assert view(again) == {b: entry(200 * DAY, 2)}
    asyncio.run(run())


def test_a_fold_of_many_predictions_is_a_few_messages() -> None:
    entries = [put(JoinKey(3, f"p{i}").encode(), i, i) for i in range(5000)]
    batches = batches_of(entries)
    encoded = [b.to_bytes() for b in batches]
    assert len(batches) == math.ceil(sum(len(e) for e in encoded) / BATCH_BYTES) <= 3
    assert all(len(e) <= BATCH_BYTES for e in encoded)
    assert [e for b in batches for e in b.entries] == entries  # every entry once, in order
    assert [JoinBatch.from_bytes(e) for e in encoded] == batches


def test_a_larger_entry_than_a_batch_goes_alone() -> None:
    big = (b"0|big", 7, orjson.dumps({"p": ["x" * 300]}))
    small = put(b"0|s", 1, 1)
    assert [b.entries for b in batches_of([small, big, small], max_bytes=100)] == [(small,), (big,), (small,)]


def test_the_previous_releases_entries_move_into_the_log_once() -> None:
    """The join_buffer table's entries of an assigned partition are written to the log, then
    deleted from the old table; one the log already has keeps the log's version."""
    async def run() -> None:
        a, b = KEYS[:2]
        other = JoinKey(1, "pid-x").encode()
        legacy = Log({a: entry(5 * DAY, 1), b: entry(6 * DAY, 2), other: entry(7 * DAY, 3)})
        log = Log()
        first = store_over(log, None)
        await first.ensure(0, 10 * DAY, TTL)
        first.append(0, [put(a, 8 * DAY, 9)])  # a crash left the old table's entry behind
        legacy[a] = entry(5 * DAY, 1)
        store = store_over(log, None, legacy)
        await store.ensure(0, 10 * DAY, TTL)
        assert view(store) == {a: entry(8 * DAY, 9), b: entry(6 * DAY, 2)}
        assert legacy == {other: entry(7 * DAY, 3)}  # another partition's wait for its own worker
        assert latest_entries(log) == view(store)
    asyncio.run(run())


def test_a_batch_is_read_back_by_slicing_as_it_was_written() -> None:
    entries = [put(JoinKey(2, f"p|{i}%").encode(), i * 1000 - 5, i) for i in range(50)]
    raw = JoinBatch(tuple(entries)).to_bytes()
    assert JoinBatch.from_bytes(raw).entries == tuple(entries)
    with pytest.raises(ValueError):
        JoinBatch.from_bytes(b"[" + raw[1:])
