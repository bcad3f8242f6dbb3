"""The evaluator of one (jobRunId, tenant:model) (table `evaluations`): gathers each partition's
part of the window's state exactly once, and evaluates when it holds every part the job tracker
said to expect. Then turns the snapshots into alert events with ids derived from what they are
about, so a repeated evaluation publishes the same ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from model_monitoring.tables.keys import (
    EvaluationKey,
    EvaluationPartKey,
    GatherKey,
    PartsChunkKey,
    decode_evaluations_key,
)
from model_monitoring.tables.partial import PartialState, VersionSegment, decode_part_rows

EVENT_NAMESPACE = uuid.UUID("6b2f3c1e-58a4-4c1b-9a53-0d7c2f0e9b11")
ALL_SEGMENTS = None  # the segment of the evaluation over all events


def merge_segments(parts: Iterable[Mapping[VersionSegment, PartialState]]
                   ) -> dict[tuple[str, str | None], PartialState]:
    """Sum parts of one (tenant, model): per version over all its events (segment None), and
    per version and named segment."""
    totals: dict[tuple[str, str | None], PartialState] = {}
    for part in parts:
        for (version, segment), state in sorted(part.items()):
            keys: list[tuple[str, str | None]] = [(version, ALL_SEGMENTS)]
            if segment:
                keys.append((version, segment))
            for key in keys:
                totals[key] = totals[key].merge(state) if key in totals else state
    return totals


def event_id(job_run_id: str, tenant: str, model: str, version: str, segment: str | None,
             subject: str, kind: str) -> str:
    """Stable id of one alert: the same run, key, version, segment and feature/metric give the
    same id however often the run is repeated."""
    name = "\x1f".join((job_run_id, tenant, model, version, segment if segment is not None else "\x00",
                        subject, kind))
    return str(uuid.uuid5(EVENT_NAMESPACE, name))


def store_part(states: Mapping[VersionSegment, PartialState]) -> bytes:
    """A partition's part in its stored form: [[version, segment, state json], ...], sorted;
    the form the part travels in (`SnapshotPart`) and is kept in (`EvaluationPartKey`)."""
    return orjson.dumps([[v, s, st.to_json()] for (v, s), st in sorted(states.items())])


def load_part(stored: bytes | Sequence[Sequence[Any]]) -> dict[VersionSegment, PartialState]:
    """A part from its stored form (bytes, or the list an evaluation of an older release kept)."""
    rows: Sequence[Sequence[Any]]
    if isinstance(stored, bytes | bytearray | memoryview):
        typed = decode_part_rows(stored)  # the written form, decoded and checked in C
        if typed is not None:
            return {(v, s): state for v, s, state in typed}
        rows = orjson.loads(stored)
    else:
        rows = stored
    return {(str(v), str(s)): PartialState.from_json(doc) for v, s, doc in rows}


@dataclass(frozen=True)
class Evaluation:
    """The evaluator's bookkeeping of one (jobRunId, tenant:model); the parts themselves are
    kept beside it, one table entry per partition (`EvaluationPartKey`), so receiving a part
    costs the part's size, not the size of every part so far."""

    job_run_id: str
    model_key: str
    window_start_ms: int
    window_end_ms: int
    # parts kept inline by an older release: partition -> stored form (read, never written)
    parts: Mapping[int, Sequence[Sequence[Any]]] = field(default_factory=dict)
    expected: tuple[int, ...] | None = None
    done: bool = False
    counts: Mapping[str, int] = field(default_factory=dict)
    publishing_since_ms: int | None = None  # set (and flushed) before the first event goes out
    received: tuple[int, ...] = ()  # the partitions whose part is kept beside this value

    def part_key(self, partition: int, source: int) -> bytes:
        """Where the part of partition `source` is kept, on this evaluator's `partition`."""
        return EvaluationPartKey(partition, self.job_run_id, self.model_key, source).encode()

    def has_part(self, partition: int) -> bool:
        return partition in self.received or partition in self.parts

    def receive(self, partition: int) -> Evaluation:
        """The part of `partition` is now kept (a redelivered part is counted once)."""
        if self.done or self.has_part(partition):
            return self
        return replace(self, received=tuple(sorted((*self.received, partition))))

    def expect(self, partitions: tuple[int, ...]) -> Evaluation:
        return self if self.expected is not None else replace(self, expected=tuple(sorted(partitions)))

    def ready(self, gathered: AbstractSet[int] = frozenset()) -> bool:
        """Every expected part is in: kept beside this value, or in the chunks of a partition
        whose chunks are all `gathered` (`PartsGather.complete`)."""
        return (not self.done and self.expected is not None
                and all(self.has_part(p) or p in gathered for p in self.expected))

    def from_chunks(self) -> tuple[int, ...]:
        """The expected partitions whose part is not kept beside this value: in a chunk."""
        return tuple(p for p in self.expected or () if not self.has_part(p))

    def merged(self, kept: Mapping[int, bytes]) -> dict[tuple[str, str | None], PartialState]:
        """(version, segment) -> the sum over the expected partitions' parts (`kept`: the parts
        kept beside this value, by partition); segment None = all of the version's events, and
        each named segment on its own."""
        return merge_segments(
            load_part(self.parts[p] if p in self.parts else kept[p]) for p in sorted(self.expected or ()))

    def publishing(self, now_ms: int) -> Evaluation:
        """Marked before publishing: a redelivery that finds the mark knows some events may
        already be out (agents/published.py)."""
        return replace(self, publishing_since_ms=now_ms)

    def finished(self, counts: Mapping[str, int]) -> Evaluation:
        """Done: keep the counts for a repeated report; the parts go (the caller deletes the
        kept ones), so state stays bounded."""
        return replace(self, parts={}, received=(), done=True, counts=dict(counts))

    def to_bytes(self) -> bytes:
        return orjson.dumps({**self.__dict__, "parts": {str(k): v for k, v in self.parts.items()}})

    @classmethod
    def from_bytes(cls, raw: bytes) -> Evaluation:
        doc = orjson.loads(raw)
        doc["parts"] = {int(k): v for k, v in doc["parts"].items()}
        doc["expected"] = tuple(doc["expected"]) if doc["expected"] is not None else None
        doc["received"] = tuple(doc.get("received") or ())
        return cls(**doc)


@dataclass(frozen=True)
class PartsGather:
    """What one evaluator partition has gathered of one run's `SnapshotParts` chunks: which chunk
    of which source partition holds which keys, the keys an evaluate request found waiting for a
    chunk, and the keys evaluated, so that a chunk is deleted once every key in it is done."""

    job_run_id: str
    window_start_ms: int
    window_end_ms: int
    chunks: Mapping[int, Mapping[int, tuple[str, ...]]] = field(default_factory=dict)  # source -> index -> keys
    counts: Mapping[int, int] = field(default_factory=dict)  # source -> how many chunks it sent
    waiting: frozenset[str] = frozenset()
    done: frozenset[str] = frozenset()
    dropped: frozenset[tuple[int, int]] = frozenset()  # (source, index) deleted
    sources: int | None = None  # the partitions that each send their chunks (None: not known yet)

    def has(self, source: int, index: int) -> bool:
        return index in self.chunks.get(source, {})

    def receive(self, source: int, index: int, count: int, keys: Iterable[str],
                sources: int | None = None) -> PartsGather:
        """Chunk `index` of `count` from `source` (one of `sources` partitions) is kept (a
        redelivered one is counted once)."""
        if self.has(source, index):
            return self
        chunks = {s: dict(c) for s, c in self.chunks.items()}
        chunks.setdefault(source, {})[index] = tuple(keys)
        return replace(self, chunks=chunks, counts={**self.counts, source: count},
                       sources=self.sources if sources is None else sources)

    def complete(self) -> frozenset[int]:
        """The source partitions whose every chunk is in."""
        return frozenset(s for s, count in self.counts.items() if len(self.chunks.get(s, {})) == count)

    def all_in(self) -> bool:
        """Every chunk of every source partition is in: every key evaluated here has every part."""
        return self.sources is not None and self.complete() >= frozenset(range(self.sources))

    def keys(self) -> dict[str, tuple[int, ...]]:
        """Each key with a part in a chunk, and the source partitions holding its parts."""
        out: dict[str, list[int]] = {}
        for source, chunks in sorted(self.chunks.items()):
            for held in chunks.values():
                for key in held:
                    if source not in out.setdefault(key, []):
                        out[key].append(source)
        return {key: tuple(sources) for key, sources in sorted(out.items())}

    def chunk_of(self, source: int, key: str) -> int | None:
        """The chunk of `source` that holds the part of `key`."""
        for index, keys in self.chunks.get(source, {}).items():
            if key in keys:
                return index
        return None

    def wait(self, keys: Iterable[str]) -> PartsGather:
        return replace(self, waiting=self.waiting | frozenset(keys))

    def finish(self, keys: Iterable[str]) -> tuple[PartsGather, list[tuple[int, int]]]:
        """`keys` are evaluated: the gather after, and the chunks now to delete (every key in
        them done)."""
        done = self.done | frozenset(keys)
        drop = [(s, i) for s, chunks in sorted(self.chunks.items()) for i, held in sorted(chunks.items())
                if (s, i) not in self.dropped and done.issuperset(held)]
        return replace(self, done=done, waiting=self.waiting - done,
                       dropped=self.dropped | frozenset(drop)), drop

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "jobRunId": self.job_run_id, "windowStartMs": self.window_start_ms,
            "windowEndMs": self.window_end_ms,
            "chunks": {str(s): {str(i): list(keys) for i, keys in sorted(c.items())}
                       for s, c in sorted(self.chunks.items())},
            "counts": {str(s): n for s, n in sorted(self.counts.items())},
            "waiting": sorted(self.waiting), "done": sorted(self.done),
            "dropped": sorted([s, i] for s, i in self.dropped), "sources": self.sources})

    @classmethod
    def from_bytes(cls, raw: bytes) -> PartsGather:
        doc = orjson.loads(raw)
        return cls(str(doc["jobRunId"]), int(doc["windowStartMs"]), int(doc["windowEndMs"]),
                   {int(s): {int(i): tuple(keys) for i, keys in c.items()} for s, c in doc["chunks"].items()},
                   {int(s): int(n) for s, n in doc["counts"].items()},
                   frozenset(doc["waiting"]), frozenset(doc["done"]),
                   frozenset((int(s), int(i)) for s, i in doc["dropped"]),
                   int(doc["sources"]) if doc.get("sources") is not None else None)


def expired_evaluations(items: Iterable[tuple[bytes, bytes]], before_ms: int) -> list[bytes]:
    """The `evaluations` keys to delete: evaluations and gathers whose window ended before
    `before_ms`; kept parts no evaluation is waiting for (its evaluation is gone, done, or does
    not list the part: left by a crash between the done mark and the parts' deletion), or is
    itself deleted; and parts chunks whose gather is gone, deleted, or lists them as dropped."""
    entries = [(decode_evaluations_key(raw_key), raw_key, raw) for raw_key, raw in items]
    evaluations = {key: Evaluation.from_bytes(raw) for key, _, raw in entries if isinstance(key, EvaluationKey)}
    gathers = {key: PartsGather.from_bytes(raw) for key, _, raw in entries if isinstance(key, GatherKey)}
    doomed = [raw_key for key, raw_key, _ in entries
              if (key in evaluations and evaluations[key].window_end_ms < before_ms)
              or (key in gathers and gathers[key].window_end_ms < before_ms)]
    for key, raw_key, _ in entries:
        if isinstance(key, EvaluationPartKey):
            owner = evaluations.get(EvaluationKey(key.partition, key.job_run_id, key.model_key))
            if (owner is None or owner.done or key.source not in owner.received
                    or owner.window_end_ms < before_ms):
                doomed.append(raw_key)
        elif isinstance(key, PartsChunkKey):
            gather = gathers.get(GatherKey(key.partition, key.job_run_id))
            if (gather is None or gather.window_end_ms < before_ms
                    or (key.source, key.index) in gather.dropped):
                doomed.append(raw_key)
    return doomed
