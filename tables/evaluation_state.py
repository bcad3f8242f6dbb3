"""The evaluator of one (jobRunId, tenant:model) (table `evaluations`): gathers each partition's
part of the window's state exactly once, and evaluates when it holds every part the job tracker
said to expect. Then turns the snapshots into alert events with ids derived from what they are
about, so a repeated evaluation publishes the same ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from model_monitoring.tables.partial import PartialState, VersionSegment

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


@dataclass(frozen=True)
class Evaluation:
    job_run_id: str
    model_key: str
    window_start_ms: int
    window_end_ms: int
    # partition -> [[version, segment, state json], ...]: kept as stored, decoded when merged
    parts: Mapping[int, Sequence[Sequence[Any]]] = field(default_factory=dict)
    expected: tuple[int, ...] | None = None
    done: bool = False
    counts: Mapping[str, int] = field(default_factory=dict)
    publishing_since_ms: int | None = None  # set (and flushed) before the first event goes out

    def add_part(self, partition: int, states: Mapping[VersionSegment, PartialState]) -> Evaluation:
        if self.done or partition in self.parts:
            return self  # a redelivered part is counted once
        stored = [[v, s, st.to_json()] for (v, s), st in sorted(states.items())]
        return replace(self, parts={**self.parts, partition: stored})

    def expect(self, partitions: tuple[int, ...]) -> Evaluation:
        return self if self.expected is not None else replace(self, expected=tuple(sorted(partitions)))

    def ready(self) -> bool:
        return (not self.done and self.expected is not None
                and set(self.expected) <= set(self.parts))

    def merged(self) -> dict[tuple[str, str | None], PartialState]:
        """(version, segment) -> the sum over partitions; segment None = all of the version's
        events, and each named segment on its own."""
        return merge_segments(
            {(str(v), str(s)): PartialState.from_json(doc) for v, s, doc in self.parts[partition]}
            for partition in sorted(self.expected or ()))

    def publishing(self, now_ms: int) -> Evaluation:
        """Marked before publishing: a redelivery that finds the mark knows some events may
        already be out (agents/published.py)."""
        return replace(self, publishing_since_ms=now_ms)

    def finished(self, counts: Mapping[str, int]) -> Evaluation:
        """Done: drop the parts (state stays bounded), keep the counts for a repeated report."""
        return replace(self, parts={}, done=True, counts=dict(counts))

    def to_bytes(self) -> bytes:
        return orjson.dumps({**self.__dict__, "parts": {str(k): v for k, v in self.parts.items()}})

    @classmethod
    def from_bytes(cls, raw: bytes) -> Evaluation:
        doc = orjson.loads(raw)
        doc["parts"] = {int(k): v for k, v in doc["parts"].items()}
        doc["expected"] = tuple(doc["expected"]) if doc["expected"] is not None else None
        return cls(**doc)

