"""Bounded state: which partials are past the retention and which join entries past the TTL,
by event time (the partition's high-water mark), so that a replay expires the same keys.

A prediction day's partial lives in two stages. Past the retention its feature and score counts
go (it is `trimmed`); its error sums, reliability bins, lags and watermarks stay until the
error retention, max(retention, join TTL), because outcomes add to them as long as they can be
joined. An arrival day's partial holds only such sums and lives as long. The ingest fold never
writes a key that `expirable` says is gone (tables/ingest.py), so a redelivered outcome can
never recreate an expired partial without its watermark and count twice."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import orjson

from model_monitoring.tables.join_buffer import JoinEntry
from model_monitoring.tables.keys import (
    ArrivalKey,
    MetaKey,
    PartialKey,
    is_arrival_key,
    is_meta_key,
    is_partial_key,
)
from model_monitoring.tables.partial import PartialState


def error_retention_ms(retention_ms: int, join_ttl_ms: int) -> int:
    """How long error sums live: as long as an outcome can still be joined, at least."""
    return max(retention_ms, join_ttl_ms)


def expirable(day: int, bucket_ms: int, high_water_ms: int, retention_ms: int) -> bool:
    """A day bucket that ends at or before (high-water mark − retention) is gone."""
    return (day + 1) * bucket_ms <= high_water_ms - retention_ms


def expired_partials(keys: Iterable[bytes], high_water_ms: dict[int, int], bucket_ms: int,
                     retention_ms: int, join_ttl_ms: int | None = None) -> Iterator[bytes]:
    """Partial keys (prediction or arrival days) to delete: their day ends before (partition
    high-water mark − error retention). Without `join_ttl_ms`, the retention alone."""
    keep_ms = error_retention_ms(retention_ms, join_ttl_ms or 0)
    for raw in keys:
        if is_meta_key(raw):
            continue
        key = ArrivalKey.decode(raw) if is_arrival_key(raw) else PartialKey.decode(raw)
        hw = high_water_ms.get(key.partition)
        if hw is not None and expirable(key.day, bucket_ms, hw, keep_ms):
            yield raw


def partials_to_trim(items: Iterable[tuple[bytes, bytes]], high_water_ms: dict[int, int],
                     bucket_ms: int, retention_ms: int, join_ttl_ms: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, trimmed value) of the prediction days past the retention but not past the error
    retention that still hold feature or score counts."""
    keep_ms = error_retention_ms(retention_ms, join_ttl_ms)
    for raw, value in items:
        if not is_partial_key(raw):
            continue
        key = PartialKey.decode(raw)
        hw = high_water_ms.get(key.partition)
        if hw is None or not expirable(key.day, bucket_ms, hw, retention_ms) or expirable(
                key.day, bucket_ms, hw, keep_ms):
            continue
        state = PartialState.from_bytes(value)
        if state.histogram.counts or state.histogram.n or state.score_counts:
            yield raw, state.trimmed().to_bytes()


# what an expired join entry was, the `state` label of its count
JOIN_STATES = ("matched", "unmatched_prediction", "unmatched_outcome", "past_ttl")


# A join entry stays this long past the TTL: the ingest fold stops matching at the TTL, and an
# outcome that comes for a prediction inside the grace is counted as unmatched in label health
# (tables/ingest.py) whenever the timer runs. Sales outcomes come up to ~120 days late.
LATE_OUTCOME_GRACE_MS = 35 * 86_400_000


def join_horizon_ms(high_water_ms: int, ttl_ms: int) -> int:
    """A join entry last touched (event time) before this is expired: high-water mark − TTL − grace."""
    return high_water_ms - ttl_ms - LATE_OUTCOME_GRACE_MS


def join_expiry(entry: JoinEntry, high_water_ms: int, ttl_ms: int) -> str | None:
    """The state an entry expires in (a `JOIN_STATES` label) once last touched before
    `join_horizon_ms`; None while it lives."""
    if entry.last_seen_ms >= join_horizon_ms(high_water_ms, ttl_ms):
        return None
    matched, unmatched_prediction, unmatched_outcome, past_ttl = JOIN_STATES
    return (past_ttl if entry.late else matched if entry.matched_by else
            unmatched_prediction if entry.prediction else unmatched_outcome)


def high_water_marks(meta_items: Iterable[tuple[bytes, bytes]]) -> dict[int, int]:
    """Partition -> max event time seen on either input, from the partials' meta keys."""
    marks: dict[int, int] = {}
    for raw_key, raw_value in meta_items:
        if is_meta_key(raw_key):
            meta = orjson.loads(raw_value)
            marks[MetaKey.decode(raw_key).partition] = max(meta.values(), default=-1)
    return marks
