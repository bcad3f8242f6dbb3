"""The weekly run's internal messages, one frozen class each, with exact `to_bytes`/`from_bytes`.

    trigger ──StartRun──> runs topic (job tracker)
    tracker ──SnapshotRequest──> snapshot-requests topic, one per partition
    snapshot ──SnapshotParts──> snapshot-parts topic: one per evaluator partition (in chunks),
                                holding the part of every (tenant:model) evaluated there; an
                                evaluator holding every source's chunks evaluates its keys
    snapshot ──PartitionReport──> runs topic
    tracker ──EvaluateKeys──> snapshot-parts topic, one per evaluator partition (in chunks): the
                              keys the reports named, evaluated if not yet (a part of an
                              older release's), reported again if so
    evaluator ──KeysEvaluated──> runs topic, one per batch of keys evaluated

(`SnapshotPart`, `EvaluateRequest` and `KeyEvaluated`, one key each, are what an older release
sent; they are still read, the last two as batches of one.)

A topic that carries two kinds tags each message with `"type"`; the tag is read here only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from model_monitoring.tables.evaluation_state import store_part
from model_monitoring.tables.job_run import COUNT_FIELDS, JobRun
from model_monitoring.tables.partial import PartialState, VersionSegment


class MessageError(ValueError):
    """An internal message that is not one of ours (a defect, or another service's message)."""


def _loads(raw: bytes) -> dict[str, Any]:
    doc = orjson.loads(raw)
    if not isinstance(doc, dict):
        raise MessageError(f"not an object: {raw[:80]!r}")
    return doc


def _tenants(value: Any) -> tuple[str, ...] | None:
    return tuple(value) if value is not None else None


# -- runs topic --------------------------------------------------------------------------------

@dataclass(frozen=True)
class StartRun:
    """A validated trigger: the run with its window and tenant scope frozen."""

    run: JobRun

    @property
    def job_run_id(self) -> str:
        return self.run.job_run_id

    def to_bytes(self) -> bytes:
        return orjson.dumps({"type": "start", "run": orjson.loads(self.run.to_bytes())})

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> StartRun:
        return cls(JobRun.from_bytes(orjson.dumps(doc["run"])))


@dataclass(frozen=True)
class PartitionReport:
    """One partition's answer to a snapshot request: the (tenant:model) keys it sent parts for."""

    job_run_id: str
    partition: int
    keys: tuple[str, ...]

    def to_bytes(self) -> bytes:
        return orjson.dumps({"type": "report", "jobRunId": self.job_run_id,
                             "partition": self.partition, "keys": sorted(self.keys)})

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> PartitionReport:
        return cls(str(doc["jobRunId"]), int(doc["partition"]), tuple(sorted(doc["keys"])))


@dataclass(frozen=True)
class KeyEvaluated:
    """One (tenant:model) key evaluated, with what it counted."""

    job_run_id: str
    key: str
    counts: Mapping[str, int] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return orjson.dumps({"type": "evaluated", "jobRunId": self.job_run_id, "key": self.key,
                             "counts": {f: int(self.counts.get(f, 0)) for f in COUNT_FIELDS}})

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> KeyEvaluated:
        counts = doc.get("counts") or {}
        return cls(str(doc["jobRunId"]), str(doc["key"]),
                   {f: int(counts.get(f, 0)) for f in COUNT_FIELDS})


@dataclass(frozen=True)
class KeysEvaluated:
    """The keys one evaluator evaluated together (an `EvaluateKeys` batch), with their counts."""

    job_run_id: str
    results: tuple[tuple[str, Mapping[str, int]], ...]

    def to_bytes(self) -> bytes:
        return orjson.dumps({"type": "evaluated-keys", "jobRunId": self.job_run_id, "results": [
            [key, {f: int(counts.get(f, 0)) for f in COUNT_FIELDS}] for key, counts in self.results]})

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> KeysEvaluated:
        return cls(str(doc["jobRunId"]), tuple(
            (str(key), {f: int((counts or {}).get(f, 0)) for f in COUNT_FIELDS}) for key, counts in doc["results"]))

    def each(self) -> tuple[KeyEvaluated, ...]:
        return tuple(KeyEvaluated(self.job_run_id, key, counts) for key, counts in self.results)


RunMessage = StartRun | PartitionReport | KeyEvaluated | KeysEvaluated
_RUN_TYPES: dict[str, Any] = {"start": StartRun, "report": PartitionReport,
                              "evaluated": KeyEvaluated, "evaluated-keys": KeysEvaluated}


def _decode_tagged(raw: bytes, types: Mapping[str, Any], topic: str) -> Any:
    """A message of a topic that carries several kinds, told apart by its `type` tag."""
    doc = _loads(raw)
    kind = types.get(str(doc.get("type")))
    if kind is None:
        raise MessageError(f"unknown {topic} message type {doc.get('type')!r}")
    return kind.from_doc(doc)


def decode_run_message(raw: bytes) -> RunMessage:
    message: RunMessage = _decode_tagged(raw, _RUN_TYPES, "runs-topic")
    return message


# -- snapshot-requests topic -------------------------------------------------------------------

@dataclass(frozen=True)
class SnapshotRequest:
    """Sent to every partition: merge your partials over the window and send the parts."""

    job_run_id: str
    window_start_ms: int
    window_end_ms: int
    tenant_ids: tuple[str, ...] | None

    def to_bytes(self) -> bytes:
        return orjson.dumps({"jobRunId": self.job_run_id, "windowStartMs": self.window_start_ms,
                             "windowEndMs": self.window_end_ms,
                             "tenantIds": list(self.tenant_ids) if self.tenant_ids is not None else None})

    @classmethod
    def from_bytes(cls, raw: bytes) -> SnapshotRequest:
        doc = _loads(raw)
        return cls(str(doc["jobRunId"]), int(doc["windowStartMs"]), int(doc["windowEndMs"]),
                   _tenants(doc.get("tenantIds")))

    @classmethod
    def for_run(cls, run: JobRun) -> SnapshotRequest:
        return cls(run.job_run_id, run.window_start_ms, run.window_end_ms, run.tenant_ids)


# -- snapshot-parts topic (keyed by tenant:model) ----------------------------------------------

@dataclass(frozen=True)
class SnapshotPart:
    """One partition's sum of its partials of one (tenant:model) over the window. The states
    travel in their stored form (`store_part`), as a JSON string inside the message, so the
    evaluator keeps them as they came and decodes them once, when it evaluates."""

    job_run_id: str
    key: str
    partition: int
    window_start_ms: int
    window_end_ms: int
    stored: bytes  # store_part(states)

    @classmethod
    def of(cls, job_run_id: str, key: str, partition: int, window_start_ms: int, window_end_ms: int,
           states: Mapping[VersionSegment, PartialState]) -> SnapshotPart:
        return cls(job_run_id, key, partition, window_start_ms, window_end_ms, store_part(states))

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "type": "part", "jobRunId": self.job_run_id, "key": self.key,
            "partition": self.partition, "windowStartMs": self.window_start_ms,
            "windowEndMs": self.window_end_ms, "states": self.stored.decode()})

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> SnapshotPart:
        states = doc["states"]  # a list: a message of an older release
        stored = states.encode() if isinstance(states, str) else orjson.dumps(states)
        return cls(str(doc["jobRunId"]), str(doc["key"]), int(doc["partition"]),
                   int(doc["windowStartMs"]), int(doc["windowEndMs"]), stored)


PARTS_CHUNK_BYTES = 256 * 1024  # a SnapshotParts message's parts, at most (a larger part goes alone)
EVALUATE_BATCH = 500  # keys evaluated together: one flush before their events, one report


@dataclass(frozen=True)
class SnapshotParts:
    """One partition's parts for one evaluator partition: the sum of its partials over the
    window of every (tenant:model) evaluated there, in chunks of at most PARTS_CHUNK_BYTES (chunk
    `chunk` of `chunks`; a partition with no part for it sends one empty chunk). Every one of
    the run's `sources` partitions sends to every evaluator partition, so an evaluator that
    holds every chunk of every source knows it holds every part of every key it evaluates: it
    evaluates then, without waiting for the tracker. One message and one table entry where one
    per key cost a message, two table writes and two changelog messages. Each part is in its
    stored form (`store_part`), as a JSON string, so a chunk is decoded to its keys cheaply and
    a part only when evaluated."""

    job_run_id: str
    partition: int
    window_start_ms: int
    window_end_ms: int
    chunk: int
    chunks: int
    sources: int  # the partitions asked for a snapshot in this run (each sends here)
    parts: tuple[tuple[str, bytes], ...]  # (tenant:model, store_part(states)), sorted by key

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.parts)

    @classmethod
    def chunked(cls, job_run_id: str, partition: int, window_start_ms: int, window_end_ms: int,
                sources: int, parts: Mapping[str, Mapping[VersionSegment, PartialState]],
                max_bytes: int = PARTS_CHUNK_BYTES) -> list[SnapshotParts]:
        """The parts (tenant:model -> states) as messages of at most `max_bytes` of parts each
        (one empty message when there are none)."""
        groups: list[list[tuple[str, bytes]]] = [[]]
        size = 0
        for key, states in sorted(parts.items()):
            stored = store_part(states)
            if groups[-1] and size + len(stored) > max_bytes:
                groups.append([])
                size = 0
            groups[-1].append((key, stored))
            size += len(stored)
        return [cls(job_run_id, partition, window_start_ms, window_end_ms, i, len(groups), sources, tuple(group))
                for i, group in enumerate(groups)]

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "type": "parts", "jobRunId": self.job_run_id, "partition": self.partition,
            "windowStartMs": self.window_start_ms, "windowEndMs": self.window_end_ms,
            "chunk": self.chunk, "chunks": self.chunks, "sources": self.sources,
            "parts": [[key, stored.decode()] for key, stored in self.parts]})

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> SnapshotParts:
        chunk, chunks, sources, partition = int(doc["chunk"]), int(doc["chunks"]), int(doc["sources"]), int(doc["partition"])
        if not 0 <= chunk < chunks or not 0 <= partition < sources:
            raise MessageError(f"parts chunk {chunk} of {chunks} from partition {partition} of {sources}")
        return cls(str(doc["jobRunId"]), partition, int(doc["windowStartMs"]),
                   int(doc["windowEndMs"]), chunk, chunks, sources,
                   tuple((str(key), str(stored).encode()) for key, stored in doc["parts"]))

    @classmethod
    def from_bytes(cls, raw: bytes) -> SnapshotParts:
        doc = _loads(raw)
        if doc.get("type") != "parts":
            raise MessageError(f"not a parts message: {raw[:80]!r}")
        return cls.from_doc(doc)


@dataclass(frozen=True)
class EvaluateRequest:
    """From the tracker: evaluate once the parts of these partitions are in."""

    job_run_id: str
    key: str
    partitions: tuple[int, ...]
    window_start_ms: int
    window_end_ms: int

    def to_bytes(self) -> bytes:
        return orjson.dumps({"type": "evaluate", "jobRunId": self.job_run_id, "key": self.key,
                             "partitions": list(self.partitions),
                             "windowStartMs": self.window_start_ms, "windowEndMs": self.window_end_ms})

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> EvaluateRequest:
        return cls(str(doc["jobRunId"]), str(doc["key"]), tuple(int(p) for p in doc["partitions"]),
                   int(doc["windowStartMs"]), int(doc["windowEndMs"]))


@dataclass(frozen=True)
class EvaluateKeys:
    """From the tracker, to one evaluator partition: evaluate each of these keys once the parts
    of its partitions are in. One message (and one flush before publishing) for many keys."""

    job_run_id: str
    keys: tuple[tuple[str, tuple[int, ...]], ...]
    window_start_ms: int
    window_end_ms: int

    def to_bytes(self) -> bytes:
        return orjson.dumps({"type": "evaluate-keys", "jobRunId": self.job_run_id,
                             "keys": [[key, list(partitions)] for key, partitions in self.keys],
                             "windowStartMs": self.window_start_ms, "windowEndMs": self.window_end_ms})

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> EvaluateKeys:
        return cls(str(doc["jobRunId"]), tuple((str(k), tuple(int(p) for p in ps)) for k, ps in doc["keys"]),
                   int(doc["windowStartMs"]), int(doc["windowEndMs"]))

    @classmethod
    def one(cls, request: EvaluateRequest) -> EvaluateKeys:
        """A single-key request (sent by an older release) as a batch of one."""
        return cls(request.job_run_id, ((request.key, request.partitions),), request.window_start_ms,
                   request.window_end_ms)


PartMessage = SnapshotParts | SnapshotPart | EvaluateRequest | EvaluateKeys
_PART_TYPES: dict[str, Any] = {"parts": SnapshotParts, "part": SnapshotPart, "evaluate": EvaluateRequest,
                               "evaluate-keys": EvaluateKeys}


def decode_part_message(raw: bytes) -> PartMessage:
    message: PartMessage = _decode_tagged(raw, _PART_TYPES, "snapshot-parts")
    return message
