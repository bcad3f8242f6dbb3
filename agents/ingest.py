"""Ingest agents: inference features and outcomes, one actor per source partition, in batches.

Thin shells over `tables.ingest.IngestFold`: decode and validate, fold, write each touched table
key once, then dead-letter what could not be used. Nothing awaits between reading the table
values and writing the new ones but the acknowledgement of the join entries, under a lock per
partition, so no other fold of the partition can interleave."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from faust.types import EventT, StreamT, TopicT

from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.schemas.rejection import MessageRejected
from model_monitoring.schemas.validation import decode_json, split_envelope
from model_monitoring.streams.app import Monitor
from model_monitoring.streams.dlq import DeadLetter, send_dead_letters
from model_monitoring.tables.ingest import FoldResult, IngestFold, meta_key
from model_monitoring.tables.join_buffer import JoinEntry
from model_monitoring.tables.partial import FEATURES, OUTCOMES, PartialState

log = logging.getLogger("model_monitoring.ingest")

Parsed = tuple[list[tuple[int, int, Any]], list[DeadLetter]]


def parse_batch(events: Sequence[EventT], kind: str, monitor: Monitor,
                make: Callable[[Any], Any]) -> Parsed:
    """Decode, split envelopes (features only), validate; bad ones become dead letters."""
    s, validators = monitor.settings, monitor.validators
    records: list[tuple[int, int, Any]] = []
    letters: list[DeadLetter] = []
    for event in events:
        msg = event.message
        try:
            obj = decode_json(msg.value, s.max_message_bytes)
            items = split_envelope(obj) if kind == "features" else [obj]
        except MessageRejected as exc:
            letters.append(DeadLetter(msg.topic, msg.partition, msg.offset, msg.key, msg.value,
                                      exc.reason, exc.detail))
            continue
        envelope = len(items) != 1 or items[0] is not obj  # split_envelope unwrapped it
        for index, item in enumerate(items):
            try:
                validators.validate(kind, item)
                records.append((msg.offset, index, make(item)))
            except MessageRejected as exc:
                value = orjson.dumps(item) if envelope else msg.value
                letters.append(DeadLetter(msg.topic, msg.partition, msg.offset, msg.key, value,
                                          exc.reason, exc.detail, index if envelope else None))
    return records, letters


class IngestShell:
    """Binds one partition's fold to the tables."""

    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor
        self.baselines = monitor.baselines

    def compute(self, partition: int, kind: str, records: list[tuple[int, int, Any]],
                meta: dict[str, int]) -> FoldResult:
        """The pure fold over the current table values (reads only)."""
        s, t = self.m.settings, self.m.tables
        fold = IngestFold(partition, bucket_ms=s.bucket_ms, retention_ms=s.retention_ms,
                          baseline_for=self.baselines.lookup, join_ttl_ms=s.join_ttl_ms)

        def get_partial(k: bytes) -> PartialState | None:
            raw = t.partials.get(k)
            return PartialState.from_bytes(raw) if raw is not None else None

        def get_join(k: bytes) -> JoinEntry | None:
            raw = t.join_buffer.get(k)
            return JoinEntry.from_bytes(raw) if raw is not None else None

        high_water = meta.get(FEATURES if kind == "features" else OUTCOMES, -1)
        partition_high_water = max(meta.values(), default=-1)  # the mark expiry reads
        if kind == "features":
            return fold.fold_predictions(records, get_partial, get_join, high_water, partition_high_water)
        return fold.fold_outcomes(records, get_partial, get_join, high_water, s.join_ttl_ms,
                                  partition_high_water)

    async def write(self, partition: int, kind: str, result: FoldResult, meta: dict[str, int]) -> None:
        """Join entries first, acknowledged, then the partials: a partial that survives a crash
        then always has the join entries that explain it, so a replay can tell a counted pair
        from an uncounted one (tests/unit/test_ingest_fold.py). Errors here are the broker's,
        not the records': they propagate, and the batch is redelivered after the restart."""
        t = self.m.tables
        for key, entry in result.joins.items():
            t.join_buffer[key] = entry.to_bytes()
        if result.joins and result.partials:
            await self.m.app.producer.flush()
        for key, state in result.partials.items():
            t.partials[key] = state.to_bytes()
        slot = FEATURES if kind == "features" else OUTCOMES
        if result.max_event_ms > meta.get(slot, -1):
            meta[slot] = result.max_event_ms
            t.partials[meta_key(partition)] = orjson.dumps(meta)

    async def fold(self, partition: int, kind: str, records: list[tuple[int, int, Any]]
                   ) -> tuple[FoldResult, list[tuple[int, int, str, str]]]:
        async with self.m.partition_locks.lock(partition):
            meta = _read_meta(self.m.tables.partials, partition)
            try:
                result = self.compute(partition, kind, records, meta)
            except Exception:  # a defect must not take the partition down: isolate the record
                log.exception("batch fold failed on %s partition %d; folding record by record",
                              kind, partition)
                return await self._one_by_one(partition, kind, records, meta)
            await self.write(partition, kind, result, meta)
            return result, [(r.offset, r.index, r.reason, r.detail) for r in result.rejected]

    async def _one_by_one(self, partition: int, kind: str, records: list[tuple[int, int, Any]],
                          meta: dict[str, int]) -> tuple[FoldResult, list[tuple[int, int, str, str]]]:
        total, rejected = FoldResult(), []
        for rec in records:
            try:
                one = self.compute(partition, kind, [rec], meta)
            except Exception as exc:  # noqa: BLE001 - recorded in the DLQ with its repr
                rejected.append((rec[0], rec[1], "internal_error", repr(exc)[:300]))
                continue
            await self.write(partition, kind, one, meta)
            total.counts.update(one.counts)
            total.label_lags_ms += one.label_lags_ms
            rejected += [(r.offset, r.index, r.reason, r.detail) for r in one.rejected]
        return total, rejected

    async def handle(self, events: Sequence[EventT], kind: str, dlq: TopicT) -> None:
        """A batch of messages, folded in chunks of at most `max_records_per_fold` records (a
        batch of envelopes can hold hundreds of thousands: memory and event-loop stalls stay
        bounded)."""
        limit = self.m.settings.max_records_per_fold
        chunk: list[EventT] = []
        size = 0
        for event in events:
            chunk.append(event)
            value = event.message.value or b""
            size += value.count(b'"predictionId"') if kind == "features" else 1
            if size >= limit:
                await self.handle_chunk(chunk, kind, dlq)
                chunk, size = [], 0
        if chunk:
            await self.handle_chunk(chunk, kind, dlq)

    async def handle_chunk(self, events: Sequence[EventT], kind: str, dlq: TopicT) -> None:
        started = time.perf_counter()
        make = InferenceRecord.from_dict if kind == "features" else OutcomeRecord.from_dict
        records, letters = parse_batch(events, kind, self.m, make)
        partition = events[0].message.partition
        topic = events[0].message.topic
        result, rejected = await self.fold(partition, kind, records)
        by_offset = {e.message.offset: e.message for e in events}
        for offset, index, reason, detail in rejected:
            msg = by_offset[offset]
            value, at = _record_bytes(msg.value, index)
            letters.append(DeadLetter(msg.topic, msg.partition, offset, msg.key, value, reason,
                                      detail, at))
        m = self.m.metrics
        m.records.labels(topic).inc(len(records))
        for kind_name, n in result.counts.items():
            m.ingest_events.labels(kind_name).inc(n)
        for lag in result.label_lags_ms:
            m.label_lag.observe(lag / 1000.0)
        m.batch_seconds.labels(topic).observe(time.perf_counter() - started)
        if letters:
            await send_dead_letters(dlq, letters, m)


def _read_meta(partials: Any, partition: int) -> dict[str, int]:
    raw = partials.get(meta_key(partition))
    return dict(orjson.loads(raw)) if raw is not None else {}


def _record_bytes(value: bytes | None, index: int) -> tuple[bytes | None, int | None]:
    """The bytes of one record and its index in the DLQ headers: the record's own JSON and its
    index in an envelope; otherwise the message itself, with no index."""
    try:
        obj = orjson.loads(value or b"")
        items = split_envelope(obj)
        if len(items) != 1 or items[0] is not obj:
            return orjson.dumps(items[index]), index
    except (orjson.JSONDecodeError, MessageRejected, IndexError):
        pass
    return value, None


def register(monitor: Monitor) -> None:
    app, s, topics = monitor.app, monitor.settings, monitor.topics
    shell = IngestShell(monitor)

    @app.agent(topics.features, name="ingest-features", isolated_partitions=True)
    async def ingest_features(stream: StreamT) -> None:
        # faust's StreamT interface omits take_events, which its Stream has
        async for events in stream.take_events(  # type: ignore[attr-defined]
                s.batch_size, within=s.batch_within_seconds):
            await shell.handle(events, "features", topics.dlq_for(topics.features))

    @app.agent(topics.outcomes, name="ingest-outcomes", isolated_partitions=True)
    async def ingest_outcomes(stream: StreamT) -> None:
        async for events in stream.take_events(  # type: ignore[attr-defined]
                s.batch_size, within=s.batch_within_seconds):
            await shell.handle(events, "outcomes", topics.dlq_for(topics.outcomes))
