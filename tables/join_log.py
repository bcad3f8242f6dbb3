"""The join state as a log: join entries written in batches, many to one changelog message.

A fold writes the join entries it changed as one batch (a few when they are many: each at most
`BATCH_BYTES`) under `JoinBatchKey(partition, seq)` in the `join_log` table: one changelog
message for hundreds of predictions, where a table of entries wrote one each. The fold reads the
entries from a local index, predictionId -> (seq, entry), on disk (streams/join_store.py). The
index is derived state: `rebuild` makes it from the partition's batches in seq order (a later
batch holds the newer version of an entry) whenever the partition is (re)assigned, so the
changelog alone is the truth, as it is for every other table. A batch is dropped once no live
entry is in it: each superseded by a later batch, or expired (`plan_expiry`).

Both rely on a key's last touch never going back from one version to the next, which the fold
guarantees: a version adds the later side of a pair to the one before (`JoinEntry.last_seen_ms`
is the later of the two times), a redelivery writes the same version, and a key written again
after its expiry is newer still (no event older than the retention or the join TTL is admitted,
and an expired entry is older than both). Were it not so, an expired newest version whose batch
was dropped could let an older version, touched later, come back at the next rebuild.

Pure: the batch codec, the chunking, the rebuild and the expiry's plan."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from model_monitoring.tables.expiry import join_expiry, join_horizon_ms
from model_monitoring.tables.join_buffer import JoinEntry
from model_monitoring.tables.keys import JoinBatchKey

BATCH_BYTES = 256 * 1024  # a batch's value stays far below Kafka's 1 MB message limit
VERSION = b"\x01"
# per entry: the key's length, the entry's last touch (event time, what expiry reads), the
# entry's length; then the key and the entry. Read back by slicing: a recovery parses no entry.
_HEAD = struct.Struct(">IqI")
_SEQ = struct.Struct(">Qq")  # an index value's head: batch seq, last touch

Entry = tuple[bytes, int, bytes]  # (JoinKey bytes, JoinEntry.last_seen_ms, JoinEntry bytes)


def entry_of(key: bytes, entry: JoinEntry) -> Entry:
    return key, entry.last_seen_ms, entry.to_bytes()


@dataclass(frozen=True)
class JoinBatch:
    """Join entries in the order a fold wrote them; each key at most once."""

    entries: tuple[Entry, ...]

    def to_bytes(self) -> bytes:
        parts = [VERSION]
        for key, seen, value in self.entries:
            parts += (_HEAD.pack(len(key), seen, len(value)), key, value)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, raw: bytes) -> JoinBatch:
        return cls(tuple(scan(raw)))


def scan(raw: bytes) -> Iterator[Entry]:
    """The entries of an encoded batch, in order."""
    if raw[:1] != VERSION:
        raise ValueError(f"not a join batch (version byte {raw[:1]!r})")
    pos, end, size, unpack = 1, len(raw), _HEAD.size, _HEAD.unpack_from
    while pos < end:
        key_len, seen, value_len = unpack(raw, pos)
        pos += size
        key = raw[pos:pos + key_len]
        pos += key_len
        yield key, seen, raw[pos:pos + value_len]
        pos += value_len


def batches_of(entries: Iterable[Entry], max_bytes: int = BATCH_BYTES) -> list[JoinBatch]:
    """Entries in order, cut into batches of at most `max_bytes` encoded (one larger entry alone)."""
    batches: list[JoinBatch] = []
    chunk: list[Entry] = []
    size = len(VERSION)
    for item in entries:
        cost = _HEAD.size + len(item[0]) + len(item[2])
        if chunk and size + cost > max_bytes:
            batches.append(JoinBatch(tuple(chunk)))
            chunk, size = [], len(VERSION)
        chunk.append(item)
        size += cost
    if chunk:
        batches.append(JoinBatch(tuple(chunk)))
    return batches


def index_value(seq: int, seen: int, entry: bytes) -> bytes:
    """An index value: the seq of the batch that holds the entry, its last touch, the entry."""
    return _SEQ.pack(seq, seen) + entry


def split_index_value(raw: bytes) -> tuple[int, int, bytes]:
    seq, seen = _SEQ.unpack_from(raw)
    return seq, seen, raw[_SEQ.size:]


def entry_bytes(raw: bytes) -> bytes:
    """The entry of an index value."""
    return raw[_SEQ.size:]


def rebuild(batches: Iterable[tuple[int, bytes]], high_water_ms: int, ttl_ms: int) -> dict[bytes, bytes]:
    """A partition's index (join key -> `index_value`) from its batches (seq, batch bytes) in seq
    order: each key's entry from the latest batch that holds it. Entries past expiry at the
    partition's mark are left out: a batch is dropped only when none of its entries lives, so an
    older version of an expired entry can outlive its newest and must not come back (its last
    touch is no later)."""
    latest: dict[bytes, tuple[int, int, bytes]] = {}
    for seq, raw in batches:
        for key, seen, value in scan(raw):
            latest[key] = (seq, seen, value)
    horizon = join_horizon_ms(high_water_ms, ttl_ms)
    return {key: index_value(seq, seen, value) for key, (seq, seen, value) in latest.items()
            if high_water_ms < 0 or seen >= horizon}


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
    horizon = join_horizon_ms(high_water_ms, ttl_ms)
    for key, raw in index:
        seq, seen, value = split_index_value(raw)
        state = join_expiry(JoinEntry.from_bytes(value), high_water_ms, ttl_ms) if seen < horizon else None
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
    for batch_key in sorted(log, key=JoinBatchKey.decode):
        for key, _, value in scan(log[batch_key]):
            out[key] = value
    return out
