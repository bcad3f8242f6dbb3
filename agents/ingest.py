"""Ingest agents: inference features and outcomes, one actor per source partition, in batches.

Thin shells over `tables.ingest.IngestFold`: decode and validate, forward the records whose
predictionId belongs to another partition (streams/repartition.py), fold the rest, write each
touched table key once, then dead-letter what could not be used. The repartition topics have
agents of their own, which fold the forwarded records under their source partition's slot.
Nothing awaits between reading the table values and writing the new ones but the
acknowledgement of the join entries, under a lock per partition, so no other fold of the
partition can interleave."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
import orjson
from faust.types import TP, EventT, StreamT, TopicT

from model_monitoring.agents.forwarded import parse_forwarded
from model_monitoring.schemas.fast_decode import Decoded, FastDecoder
from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.schemas.rejection import MessageRejected
from model_monitoring.schemas.validation import Validators, decode_json, split_envelope
from model_monitoring.streams.app import Monitor
from model_monitoring.streams.batches import take_batches
from model_monitoring.streams.dlq import DeadLetter, send_dead_letters
from model_monitoring.streams.producer_buffer import flush_durably
from model_monitoring.streams.repartition import Outgoing, send_forwards
from model_monitoring.streams.write_gate import write_gate
from model_monitoring.tables.forwarding import Forward, InPlace, Origin, admit_on_arrival, envelope_of, route
from model_monitoring.tables.health_buckets import BucketBook, BucketTracker
from model_monitoring.tables.ingest import FoldResult, IngestFold, meta_key
from model_monitoring.tables.join_buffer import JoinEntry
from model_monitoring.tables.join_log import entry_of
from model_monitoring.tables.keys import IncidentBookKey
from model_monitoring.tables.partial import FEATURES, OUTCOMES, PartialState, forwarded_slot

log = logging.getLogger("model_monitoring.ingest")

Rejected = list[tuple[int, int, str, str]]  # (offset, index, reason, detail)


class Parsed(NamedTuple):
    records: list[tuple[int, int, Any]]  # (offset, index in envelope or 0, record)
    letters: list[DeadLetter]
    envelopes: dict[int, Sequence[Any]]  # offset -> the records of an envelope message


def parse_batch(events: Sequence[EventT], kind: str, monitor: Monitor,
                make: Callable[[Any], Any], fast: FastDecoder | None = None) -> Parsed:
    """Decode, split envelopes (features only), validate; bad ones become dead letters."""
    return parse_messages([event.message for event in events], kind, monitor.validators,
                          monitor.settings.max_message_bytes, make, fast)


def parse_messages(messages: Sequence[Any], kind: str, validators: Validators, max_bytes: int,
                   make: Callable[[Any], Any], fast: FastDecoder | None = None) -> Parsed:
    """`parse_batch` over messages (topic, partition, offset, key, value). A message the fast
    path (schemas/fast_decode.py) accepts whole is decoded there; any other takes the full way,
    which gives each rejection its reason and detail."""
    records: list[tuple[int, int, Any]] = []
    letters: list[DeadLetter] = []
    envelopes: dict[int, Sequence[Any]] = {}
    for msg in messages:
        value = msg.value
        decoded = fast.decode(value) if fast is not None else None
        if decoded is not None:
            offset = msg.offset
            if decoded.enveloped:
                envelopes[offset] = LazyRaws(decoded)  # the records' own JSON (`envelope_items`)
            records.extend([(offset, index, record) for index, record in enumerate(decoded.records)])
            continue
        try:
            obj = decode_json(value, max_bytes)
            items = split_envelope(obj) if kind == "features" else [obj]
        except MessageRejected as exc:
            letters.append(DeadLetter(msg.topic, msg.partition, msg.offset, msg.key, value,
                                      exc.reason, exc.detail))
            continue
        envelope = len(items) != 1 or items[0] is not obj  # split_envelope unwrapped it
        if envelope:
            envelopes[msg.offset] = items
        for index, item in enumerate(items):
            try:
                validators.validate(kind, item)
                records.append((msg.offset, index, make(item)))
            except MessageRejected as exc:
                dead = orjson.dumps(item) if envelope else value
                letters.append(DeadLetter(msg.topic, msg.partition, msg.offset, msg.key, dead,
                                          exc.reason, exc.detail, index if envelope else None))
    return Parsed(records, letters, envelopes)


class LazyRaws(Sequence[Any]):
    """An envelope's records as they came (`Decoded.raws`), split from the message when first
    read: a forward through the broker reads them, a fold in place does not."""

    __slots__ = ("_decoded",)

    def __init__(self, decoded: Decoded) -> None:
        self._decoded = decoded

    def __len__(self) -> int:
        return len(self._decoded.records)

    def __getitem__(self, index: Any) -> Any:
        return self._decoded.raw(index)


def envelope_items(items: Sequence[Any]) -> list[Any]:
    """An envelope's records as `envelope_of` writes them: decoded objects as they are, records
    the fast path kept as their own JSON (msgspec.Raw) as that JSON, unchanged."""
    return [orjson.Fragment(bytes(item)) if isinstance(item, msgspec.Raw) else item for item in items]


def direct_slot(kind: str) -> str:
    return FEATURES if kind == "features" else OUTCOMES


@dataclass
class Unwritten:
    """What the folds of one write have computed and not yet stored: the later folds read it
    before the tables (`IngestShell.fold_logs`)."""

    result: FoldResult = field(default_factory=FoldResult)

    def add(self, fold: FoldResult) -> None:
        r = self.result
        r.partials.update(fold.partials)
        r.joins.update(fold.joins)
        r.bucket_books.update(fold.bucket_books)
        r.closed_buckets += fold.closed_buckets


class IngestShell:
    """Binds one partition's fold to the tables."""

    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor
        self.baselines = monitor.baselines
        s = monitor.settings
        self.fast = {kind: FastDecoder(kind, s.max_features, s.max_message_bytes) for kind in ("features", "outcomes")}
        self.in_place = InPlace()  # the forwards folded here, not sent (streams/repartition.py)
        self.gate = write_gate(monitor.app)
        self.folded_signal = asyncio.Event()  # set (and replaced) whenever a repartition chunk is folded

    def compute(self, partition: int, kind: str, records: list[tuple[int, int, Any]],
                meta: dict[str, int], slot: str, unwritten: Unwritten | None = None) -> FoldResult:
        """The pure fold over the current values (reads only): `unwritten`'s, where an earlier
        fold of the same write left them, else the tables'."""
        s, t = self.m.settings, self.m.tables
        left = unwritten or Unwritten()
        tracker = None
        if s.continuous_enabled and t.detect_buckets is not None:
            books = t.detect_buckets

            def get_book(model_key: str) -> BucketBook | None:
                if model_key in left.result.bucket_books:
                    return left.result.bucket_books[model_key]
                raw = books.get(IncidentBookKey(partition, model_key).encode())
                return BucketBook.from_bytes(raw) if raw is not None else None

            tracker = BucketTracker(partition, s.continuous_lateness_seconds * 1000, get_book)
        fold = IngestFold(partition, bucket_ms=s.bucket_ms, retention_ms=s.retention_ms,
                          baseline_for=self.baselines.once(), join_ttl_ms=s.join_ttl_ms,
                          buckets=tracker)

        def get_partial(k: bytes) -> PartialState | None:
            if k in left.result.partials:
                return left.result.partials[k]
            raw = t.partials.get(k)
            return PartialState.from_bytes(raw) if raw is not None else None

        joins = self.m.joins

        def get_join(k: bytes) -> JoinEntry | None:
            if k in left.result.joins:
                return left.result.joins[k]
            raw = joins.get(partition, k)
            return JoinEntry.from_bytes(raw) if raw is not None else None

        high_water = meta.get(slot, -1)
        partition_high_water = max(meta.values(), default=-1)  # the mark expiry reads
        if kind == "features":
            return fold.fold_predictions(records, get_partial, get_join, high_water,
                                         partition_high_water, slot=slot)
        return fold.fold_outcomes(records, get_partial, get_join, high_water, s.join_ttl_ms,
                                  partition_high_water, slot=slot)

    async def write(self, partition: int, result: FoldResult, meta: dict[str, int],
                    marks: dict[str, int]) -> None:
        """Join entries first (batches of the join log, streams/join_store.py), acknowledged,
        then the partials: a partial that survives a crash then always has the join entries that
        explain it, so a replay can tell a counted pair from an uncounted one
        (tests/unit/test_ingest_fold.py). Errors here are the broker's,
        not the records': they propagate, and the batch is redelivered after the restart."""
        t = self.m.tables
        self.m.joins.append(partition, [entry_of(key, entry) for key, entry in result.joins.items()])
        if result.joins and result.partials:
            await flush_durably(self.m.app)
        for key, state in result.partials.items():
            t.partials[key] = state.to_bytes()
        await self.write_buckets(partition, result)
        moved = {slot: mark for slot, mark in marks.items() if mark > meta.get(slot, -1)}
        if moved:  # the logs' event-time marks, last
            meta.update(moved)
            t.partials[meta_key(partition)] = orjson.dumps(meta)

    async def write_buckets(self, partition: int, result: FoldResult) -> None:
        """Closed minutes out to the detectors (flushed), then the open ones stored: a crash in
        between sends the same closed minutes again, which the detectors skip by their marks."""
        topic = self.m.topics.detector_buckets
        if result.closed_buckets and topic is not None:
            for closed in result.closed_buckets:
                await topic.send(key=closed.model_key.encode(), value=closed.to_bytes())
            await flush_durably(self.m.app)
        table = self.m.tables.detect_buckets
        if table is not None:
            for model_key, book in result.bucket_books.items():
                table[IncidentBookKey(partition, model_key).encode()] = book.to_bytes()

    async def fold(self, partition: int, kind: str, records: list[tuple[int, int, Any]],
                   slot: str | None = None, mark: int = -1) -> tuple[FoldResult, Rejected]:
        """Fold records of one log (`slot`: the partition's own, by default, or a forwarded
        source partition's) into `partition`'s tables; `mark`: the slot's event-time mark
        moved by the records forwarded from it too (`admit_on_arrival`)."""
        [folded] = await self.fold_logs(partition, kind, [(slot or direct_slot(kind), records, mark)])
        return folded

    async def fold_logs(self, partition: int, kind: str,
                        logs: Sequence[tuple[str, list[tuple[int, int, Any]], int]]
                        ) -> list[tuple[FoldResult, Rejected]]:
        """`fold` of several logs' records (slot, records, mark) — a forwarded batch holds those
        of every source partition — one log after another, each over the values the previous
        left, then written once: as if folded and written one by one, for one write per batch.
        A write costs a value and a changelog message per partial key the fold touched, and each
        source partition's fold touches the same keys (tenant, model, version, segment, day)."""
        async with self.m.partition_locks.lock(partition):
            meta = _read_meta(self.m.tables.partials, partition)
            # the partition's join index, rebuilt from the join log on its first fold here
            await self.m.joins.ensure(partition, max(meta.values(), default=-1), self.m.settings.join_ttl_ms)
            stored = dict(meta)  # the marks as stored: `meta` follows the folds below
            unwritten, results, marks = Unwritten(), [], {}
            try:
                for slot, records, mark in logs:
                    result = self.compute(partition, kind, records, meta, slot, unwritten)
                    unwritten.add(result)
                    marks[slot] = max(result.max_event_ms, mark)
                    if marks[slot] > meta.get(slot, -1):
                        meta[slot] = marks[slot]  # the next log's fold reads it, as after a write
                    results.append(result)
            except Exception:  # a defect must not take the partition down: isolate the record
                log.exception("batch fold failed on %s partition %d; folding record by record",
                              kind, partition)
                folded = []
                meta = stored  # nothing was written; each record's write moves it from here
                for slot, records, mark in logs:
                    folded.append(await self._one_by_one(partition, kind, records, meta, slot, mark))
                return folded
            await self.write(partition, unwritten.result, stored, marks)
            return [(r, [(x.offset, x.index, x.reason, x.detail) for x in r.rejected]) for r in results]

    async def _one_by_one(self, partition: int, kind: str, records: list[tuple[int, int, Any]],
                          meta: dict[str, int], slot: str, mark: int) -> tuple[FoldResult, Rejected]:
        total, rejected = FoldResult(), []
        for rec in records:
            try:
                one = self.compute(partition, kind, [rec], meta, slot)
            except Exception as exc:  # noqa: BLE001 - recorded in the DLQ with its repr
                rejected.append((rec[0], rec[1], "internal_error", repr(exc)[:300]))
                continue
            await self.write(partition, one, meta, {slot: max(one.max_event_ms, mark)})
            total.counts.update(one.counts)
            total.label_lags_ms += one.label_lags_ms
            rejected += [(r.offset, r.index, r.reason, r.detail) for r in one.rejected]
        return total, rejected

    async def handle(self, events: Sequence[EventT], kind: str, dlq: TopicT, forwarded: bool = False) -> None:
        """A batch of messages, folded in chunks of at most `max_records_per_fold` records (a
        batch of envelopes can hold hundreds of thousands: memory and event-loop stalls stay
        bounded). `forwarded`: the batch is from a repartition topic."""
        limit = self.m.settings.max_records_per_fold
        handle_chunk = self.handle_forwarded_chunk if forwarded else self.handle_chunk
        chunk: list[EventT] = []
        size = 0
        for event in events:
            chunk.append(event)
            value = event.message.value or b""
            size += value.count(b'"predictionId"') if kind == "features" else 1
            if size >= limit:
                await handle_chunk(chunk, kind, dlq)
                chunk, size = [], 0
        if chunk:
            await handle_chunk(chunk, kind, dlq)

    async def handle_chunk(self, events: Sequence[EventT], kind: str, dlq: TopicT) -> None:
        """Messages of an input topic's partition: forward what belongs elsewhere, fold the rest."""
        started = time.perf_counter()
        make = InferenceRecord.from_dict if kind == "features" else OutcomeRecord.from_dict
        records, letters, envelopes = parse_batch(events, kind, self.m, make, self.fast[kind])
        partition = events[0].message.partition
        topic = events[0].message.topic
        s, slot = self.m.settings, direct_slot(kind)
        async with self.m.partition_locks.lock(partition):
            high_water = _read_meta(self.m.tables.partials, partition).get(slot, -1)
        horizon, why = ((s.retention_ms, "prediction older than the retention") if kind == "features"
                        else (s.join_ttl_ms, "outcome older than the join TTL"))
        admitted, late, mark = admit_on_arrival(records, high_water, horizon, why)
        own, forwards = route(admitted, partition, s.partitions)
        by_offset = {e.message.offset: e.message for e in events}
        here, forwards = await self.split_in_place(kind, topic, partition, forwards)
        if forwards:  # acknowledged before any fold
            await self.forward(kind, topic, partition, forwards, by_offset, envelopes)
        results, rejected = await self.fold_in_place(kind, topic, partition, here, admitted)
        result, own_rejected = await self.fold(partition, kind, own, slot, mark)
        results.append(result)
        rejected += own_rejected
        rejected += [(r.offset, r.index, r.reason, r.detail) for r in late]
        for offset, index, reason, detail in rejected:
            msg = by_offset[offset]
            value, at = _record_bytes(msg.value, index)
            letters.append(DeadLetter(msg.topic, msg.partition, offset, msg.key, value, reason,
                                      detail, at))
        await self.account(topic, len(records), results, letters, dlq, started)

    def generation(self) -> tuple[int, frozenset[TP]]:
        """The rebalance generation `InPlace` decides for: the write gate's count of rebalances,
        and the assignment itself (a changed assignment is a new generation however it came)."""
        return self.gate.generation, frozenset(self.m.app.assignor.assigned_actives())

    async def split_in_place(self, kind: str, topic: str, partition: int, forwards: list[Forward]
                             ) -> tuple[list[Forward], list[Forward]]:
        """(the forwards folded here, those sent): a forward goes in place when this worker
        holds its destination and `InPlace` says the destination's earlier forwards of this
        source are folded (streams/repartition.py, "Folded in place"). At least once only:
        exactly once, a forward belongs to the source partition's transaction."""
        s, app = self.m.settings, self.m.app
        if not forwards or not s.forward_in_place or s.processing_guarantee != "at_least_once":
            return [], forwards
        state = self.in_place
        state.begin(self.generation())
        repartition = s.repartition_topic(topic)
        held = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == repartition}
        targets = sorted({f.target for f in forwards} & held)
        if not targets:
            return [], forwards
        unread = [TP(repartition, t) for t in targets if state.wants_end(kind, t)]
        if unread:
            for tp, end in (await app.consumer.highwaters(*unread)).items():
                state.saw_end(kind, tp.partition, end)
        committed = getattr(app.consumer, "_committed_offset", {})
        chosen = {t for t in targets
                  if state.decide(kind, partition, t, committed.get(TP(repartition, t)))}
        if len(chosen) < len(targets) and await self.await_own_forwards(kind, repartition, set(targets) - chosen):
            chosen = {t for t in targets
                      if state.decide(kind, partition, t, committed.get(TP(repartition, t)))}
        if not chosen:
            return [], forwards
        return [f for f in forwards if f.target in chosen], [f for f in forwards if f.target not in chosen]

    async def await_own_forwards(self, kind: str, repartition: str, targets: set[int]) -> bool:
        """Wait, bounded, while the only forwards between `targets` and folding in place are this
        worker's own (`InPlace.own_forwards_ahead`) for the repartition reader to fold them; at
        steady load each batch would otherwise send more and move the mark again. True when it
        waited. Leaves when the write gate closes (a rebalance, whose revocation waits for this
        batch: a new generation comes), seen within 50 ms."""
        state, consumer = self.in_place, self.m.app.consumer
        limit = max(1.0, 5 * self.m.settings.batch_within_seconds)  # the reader takes a batch within that
        deadline = time.monotonic() + limit
        waited = False
        while self.gate.is_open:
            committed = getattr(consumer, "_committed_offset", {})
            waiting = [t for t in sorted(targets)
                       if state.own_forwards_ahead(kind, t, committed.get(TP(repartition, t)))]
            if not waiting:
                return waited
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for t in waiting:
                    state.give_up(kind, t)
                log.info("%s forwards to %s partitions %s not folded within %.1fs: sent through the "
                         "broker until the next rebalance or until its reader catches up", kind, repartition,
                         waiting, limit)
                return waited
            waited = True
            signal = self.folded_signal
            with contextlib.suppress(TimeoutError):  # in slices: a closing gate is seen within 50 ms
                await asyncio.wait_for(signal.wait(), min(remaining, 0.05))
        return waited

    async def fold_in_place(self, kind: str, topic: str, partition: int, here: list[Forward],
                            admitted: list[tuple[int, int, Any]]) -> tuple[list[FoldResult], Rejected]:
        """Fold the records of `here` into their destinations' tables, each under the forwarded
        slot of this source partition, with its source offsets: what the destination's reading
        of the repartition topic would do with them."""
        if not here:
            return [], []
        target_of = {(f.offset, index): f.target for f in here for index in f.indexes}
        by_target: dict[int, list[tuple[int, int, Any]]] = {}
        for offset, index, rec in admitted:  # in source order
            target = target_of.get((offset, index))
            if target is not None:
                by_target.setdefault(target, []).append((offset, index, rec))
        slot = forwarded_slot(direct_slot(kind), partition)
        results: list[FoldResult] = []
        rejected: Rejected = []
        for target in sorted(by_target):
            result, rejects = await self.fold(target, kind, by_target[target], slot)
            results.append(result)
            rejected += rejects
        n = len(target_of)
        self.m.metrics.mispartitioned.labels(topic).inc(n)
        self.m.metrics.folded_in_place.labels(topic).inc(n)
        return results, rejected

    async def forward(self, kind: str, topic: str, partition: int, forwards: list[Forward],
                      by_offset: dict[int, Any], envelopes: dict[int, Sequence[Any]]) -> None:
        """Send each (message, destination)'s records to the destination's repartition partition,
        with their origin; return once the broker has them all (streams/repartition.py), noting
        where they are: what an in-place fold there waits for (in the generation now: a forward
        sent across a rebalance is waited for in the new one too, which only ever delays folding
        in place)."""
        outgoing = []
        for f in forwards:
            msg = by_offset[f.offset]
            items = envelopes.get(f.offset)
            if items is None:  # a single record: its own bytes
                value, indexes = msg.value, None
            else:
                value, indexes = envelope_of(envelope_items([items[i] for i in f.indexes])), f.indexes
            outgoing.append(Outgoing(f.target, msg.key, value,
                                     Origin(topic, partition, f.offset, indexes).headers()))
        acknowledged = await send_forwards(self.m.app, self.m.settings.repartition_topic(topic), topic,
                                           partition, outgoing)
        self.m.metrics.mispartitioned.labels(topic).inc(sum(len(f.indexes) for f in forwards))
        self.in_place.begin(self.generation())
        for target, offset in acknowledged.items():
            self.in_place.forwarded(kind, target, offset)

    async def handle_forwarded_chunk(self, events: Sequence[EventT], kind: str, dlq: TopicT) -> None:
        """Messages of a repartition topic's partition: each source partition's records folded
        under its own slot, with its own offsets."""
        started = time.perf_counter()
        s = self.m.settings
        make = InferenceRecord.from_dict if kind == "features" else OutcomeRecord.from_dict
        source_topic = s.features_topic if kind == "features" else s.outcomes_topic
        batch = parse_forwarded(events, kind, source_topic, self.m, make, self.fast[kind])
        partition = events[0].message.partition
        sources = list(batch.by_source)
        generation = self.generation()
        folded = await self.fold_logs(partition, kind, [
            (forwarded_slot(direct_slot(kind), source), batch.by_source[source], -1) for source in sources])
        if self.generation() == generation:  # folded in this generation (none began meanwhile)
            self.in_place.begin(generation)
            self.in_place.folded_to(kind, partition, events[-1].message.offset + 1)
            self.folded_signal.set()  # to a batch waiting for its own forwards (await_own_forwards)
            self.folded_signal = asyncio.Event()
        results = []
        for source_partition, (result, rejected) in zip(sources, folded, strict=True):
            results.append(result)
            batch.letters += [batch.dead_letter(source_partition, offset, index, reason, detail)
                              for offset, index, reason, detail in rejected]
        # counted in records_consumed_total where they arrived, and in mispartitioned_records_total
        await self.account(events[0].message.topic, 0, results, batch.letters, dlq, started)

    async def account(self, topic: str, n_records: int, results: list[FoldResult],
                      letters: list[DeadLetter], dlq: TopicT, started: float) -> None:
        """Metrics of a chunk, then its dead letters."""
        m = self.m.metrics
        if n_records:
            m.records.labels(topic).inc(n_records)
        for result in results:
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
    gate = write_gate(app)  # a batch is not folded while a rebalance recovers the tables

    @app.agent(topics.features, name="ingest-features", isolated_partitions=True)
    async def ingest_features(stream: StreamT) -> None:
        # a batch is acknowledged once handled, not when the actor fails in it (streams/batches.py)
        async for events in take_batches(stream, s.batch_size, s.batch_within_seconds):
            async with gate.writing():
                await shell.handle(events, "features", topics.dlq_for(topics.features))

    @app.agent(topics.outcomes, name="ingest-outcomes", isolated_partitions=True)
    async def ingest_outcomes(stream: StreamT) -> None:
        async for events in take_batches(stream, s.batch_size, s.batch_within_seconds):
            async with gate.writing():
                await shell.handle(events, "outcomes", topics.dlq_for(topics.outcomes))

    @app.agent(topics.features_repartition, name="ingest-forwarded-features", isolated_partitions=True)
    async def ingest_forwarded_features(stream: StreamT) -> None:
        async for events in take_batches(stream, s.batch_size, s.batch_within_seconds):
            async with gate.writing():
                await shell.handle(events, "features", topics.dlq_for(topics.features), forwarded=True)

    @app.agent(topics.outcomes_repartition, name="ingest-forwarded-outcomes", isolated_partitions=True)
    async def ingest_forwarded_outcomes(stream: StreamT) -> None:
        async for events in take_batches(stream, s.batch_size, s.batch_within_seconds):
            async with gate.writing():
                await shell.handle(events, "outcomes", topics.dlq_for(topics.outcomes), forwarded=True)
