"""The join state as a log: join entries written in batches, many to one changelog message.

A fold writes the join entries it changed as one batch (a few when they are many: each at most
`BATCH_BYTES`) under `JoinBatchKey(partition, seq)` in the `join_log` table: one changelog
message for hundreds of predictions, where a table of entries wrote one each. The fold reads the
entries from a local index, predictionId -> (seq, entry), on disk (streams/join_store.py). The
index is derived state: `rebuild` makes it from the partition's batches in seq order (a later
batch holds the newer version of an entry) whenever the partition is (re)assigned, so the
changelog alone is the truth, as it is for every other table. A batch is dropped once no live
entry is in it: each superseded by a later batch, or expired (`plan_expiry`).

Pure: the batch codec, the chunking, the rebuild and the expiry's plan."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson

from model_monitoring.tables.expiry import join_expiry
from model_monitoring.tables.join_buffer import JoinEntry
from model_monitoring.tables.keys import JoinBatchKey

BATCH_BYTES = 256 * 1024  # a batch's value stays far below Kafka's 1 MB message limit
SEQ_BYTES = 8

Entry = tuple[bytes, bytes]  # (JoinKey bytes, JoinEntry bytes)


@dataclass(frozen=True)
class JoinBatch:
    """Join entries in the order a fold wrote them; each key at most once."""

    entries: tuple[Entry, ...]

    def to_bytes(self) -> bytes:
        return orjson.dumps([[key.decode(), orjson.Fragment(value)] for key, value in self.entries])

    @classmethod
    def from_bytes(cls, raw: bytes) -> JoinBatch:
        # an entry's bytes are orjson's, and orjson writes a decoded document back byte for byte
        return cls(tuple((key.encode(), orjson.dumps(doc)) for key, doc in orjson.loads(raw)))


def batches_of(entries: Iterable[Entry], max_bytes: int = BATCH_BYTES) -> list[JoinBatch]:
    """Entries in order, cut into batches of at most `max_bytes` encoded (one larger entry alone)."""
    batches: list[JoinBatch] = []
    chunk: list[Entry] = []
    size = 2
    for key, value in entries:
        cost = len(key) + len(value) + 6  # ["key",value],
        if chunk and size + cost > max_bytes:
            batches.append(JoinBatch(tuple(chunk)))
            chunk, size = [], 2
        chunk.append((key, value))
        size += cost
    if chunk:
        batches.append(JoinBatch(tuple(chunk)))
    return batches


def index_value(seq: int, entry: bytes) -> bytes:
    """An index value: the seq of the batch that holds the entry, then the entry."""
    return seq.to_bytes(SEQ_BYTES, "big") + entry


def split_index_value(raw: bytes) -> tuple[int, bytes]:
    return int.from_bytes(raw[:SEQ_BYTES], "big"), raw[SEQ_BYTES:]


def rebuild(batches: Iterable[tuple[int, JoinBatch]], high_water_ms: int, ttl_ms: int) -> dict[bytes, bytes]:
    """A partition's index (join key -> `index_value`) from its batches in seq order: each key's
    entry from the latest batch that holds it. Entries past expiry at the partition's mark are
    left out: a batch is dropped only when none of its entries lives, so an older version of an
    expired entry can outlive its newest and must not come back (its last touch is no later)."""
    latest: dict[bytes, tuple[int, bytes]] = {}
    for seq, batch in batches:
        for key, value in batch.entries:
            latest[key] = (seq, value)
    return {key: index_value(seq, value) for key, (seq, value) in latest.items()
            if high_water_ms < 0 or join_expiry(JoinEntry.from_bytes(value), high_water_ms, ttl_ms) is None}


@dataclass(frozen=True)
class JoinExpiry:
    expired: list[tuple[bytes, str]]  # (join key, the state it expired in)
    dropped: list[int]                # seqs of the batches no live entry is in
    live: int                         # entries left


def plan_expiry(index: Iterable[tuple[bytes, bytes]], batch_seqs: Iterable[int], high_water_ms: int,
                ttl_ms: int) -> JoinExpiry:
    """What a partition's expiry deletes: the index's entries past the TTL and grace at the
    partition's mark, and the batches that then hold no live entry."""
    referenced: set[int] = set()
    expired: list[tuple[bytes, str]] = []
    live = 0
    for key, raw in index:
        seq, value = split_index_value(raw)
        state = join_expiry(JoinEntry.from_bytes(value), high_water_ms, ttl_ms)
        if state is None:
            referenced.add(seq)
            live += 1
        else:
            expired.append((key, state))
    return JoinExpiry(expired, [seq for seq in batch_seqs if seq not in referenced], live)


def latest_entries(log: Mapping[bytes, bytes]) -> dict[bytes, bytes]:
    """Join key -> entry bytes: what a join log (batch key -> batch bytes, e.g. its changelog
    read to the end) holds: the latest version of each entry."""
    out: dict[bytes, bytes] = {}
    for batch_key in sorted(JoinBatchKey.decode(raw) for raw in log):
        for key, value in JoinBatch.from_bytes(log[batch_key.encode()]).entries:
            out[key] = value
    return out
