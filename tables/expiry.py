"""Bounded state: which partials are past the retention and which join entries past the TTL,
by event time (the partition's high-water mark), so that a replay expires the same keys."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import orjson

from model_monitoring.tables.join_buffer import JoinEntry
from model_monitoring.tables.keys import MetaKey, PartialKey, is_meta_key, is_partial_key, partition_of


def expired_partials(keys: Iterable[bytes], high_water_ms: dict[int, int], bucket_ms: int,
                     retention_ms: int) -> Iterator[bytes]:
    """Partial keys whose day ends before (partition high-water mark − retention)."""
    for raw in keys:
        if not is_partial_key(raw):
            continue
        key = PartialKey.decode(raw)
        hw = high_water_ms.get(key.partition)
        if hw is not None and (key.day + 1) * bucket_ms <= hw - retention_ms:
            yield raw


# what an expired join entry was, the `state` label of its count
JOIN_STATES = ("matched", "unmatched_prediction", "unmatched_outcome")


def expired_joins(items: Iterable[tuple[bytes, bytes]], high_water_ms: dict[int, int],
                  ttl_ms: int) -> Iterator[tuple[bytes, str]]:
    """Join entries last touched (event time) before (high-water mark − TTL), with their state."""
    for raw_key, raw_value in items:
        partition = partition_of(raw_key)
        hw = high_water_ms.get(partition)
        if hw is None:
            continue
        entry = JoinEntry.from_bytes(raw_value)
        if entry.last_seen_ms < hw - ttl_ms:
            matched, unmatched_prediction, unmatched_outcome = JOIN_STATES
            state = (matched if entry.matched_by else
                     unmatched_prediction if entry.prediction else unmatched_outcome)
            yield raw_key, state


def high_water_marks(meta_items: Iterable[tuple[bytes, bytes]]) -> dict[int, int]:
    """Partition -> max event time seen on either input, from the partials' meta keys."""
    marks: dict[int, int] = {}
    for raw_key, raw_value in meta_items:
        if is_meta_key(raw_key):
            meta = orjson.loads(raw_value)
            marks[MetaKey.decode(raw_key).partition] = max(meta.values(), default=-1)
    return marks
