"""Records that arrived on another partition than their predictionId's: which ones, where they
go, and what a forwarded message carries so that its fold treats it as if it had arrived there.

A forwarded message holds the records of one source message bound for one partition: the
message's own bytes when it is a single record, else an envelope of those records. Its headers
name where they came from (`Origin`): source topic, partition, offset, and for an envelope the
records' indexes in it. The fold at the destination counts them under the watermark slot of
that source partition with the source offsets (`tables/partial.forwarded_slot`), so a record
forwarded twice (a crash between forwarding and committing) is the same event, not a new one.
The reasoning is in `streams/repartition.py`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import orjson

from model_monitoring.tables.ingest import Rejection
from model_monitoring.tables.partitioning import partitions_of_predictions

TOPIC, PARTITION, OFFSET, INDEXES = "source.topic", "source.partition", "source.offset", "source.indexes"


class Keyed(Protocol):
    @property
    def prediction_id(self) -> str: ...

    @property
    def timestamp_ms(self) -> int: ...


R = TypeVar("R", bound=Keyed)


@dataclass(frozen=True)
class Forward:
    """The records of the source message at `offset` that belong to partition `target`."""

    offset: int
    target: int
    indexes: tuple[int, ...]  # their positions in the message (0 for a single record)


def route(records: Iterable[tuple[int, int, R]], partition: int, partitions: int
          ) -> tuple[list[tuple[int, int, R]], list[Forward]]:
    """Split one source partition's records (offset, index, record), in source order, into those
    this partition folds itself and those it forwards, one `Forward` per (message, target) in
    source order."""
    records = list(records)
    targets = partitions_of_predictions([rec.prediction_id for _, _, rec in records], partitions)
    own: list[tuple[int, int, R]] = []
    forwards: dict[tuple[int, int], list[int]] = {}
    for (offset, index, rec), target in zip(records, targets, strict=True):
        if target == partition:
            own.append((offset, index, rec))
        else:
            forwards.setdefault((offset, target), []).append(index)
    return own, [Forward(offset, target, tuple(indexes)) for (offset, target), indexes in forwards.items()]


def admit_on_arrival(records: Iterable[tuple[int, int, R]], high_water_ms: int, horizon_ms: int,
                     reason: str) -> tuple[list[tuple[int, int, R]], list[Rejection], int]:
    """Too late or not, decided where a record arrived, before any is forwarded: a record older
    than (the partition's event-time mark − horizon) is rejected, any other moves the mark —
    every record the partition received, forwarded or not, as if none were forwarded. (At its
    destination, a forwarded record would meet only the mark of the records forwarded with it,
    and one too late where it arrived would count.) Returns the admitted records, the rejected
    ones and the new mark."""
    admitted: list[tuple[int, int, R]] = []
    rejected: list[Rejection] = []
    mark = high_water_ms
    for offset, index, rec in records:
        if mark >= 0 and rec.timestamp_ms < mark - horizon_ms:
            rejected.append(Rejection(offset, index, "too_late", reason))
            continue
        mark = max(mark, rec.timestamp_ms)
        admitted.append((offset, index, rec))
    return admitted, rejected, mark


def envelope_of(items: Sequence[object]) -> bytes:
    """An envelope of the given records (the contract's `{"records": [...]}`)."""
    return orjson.dumps({"records": list(items)})


class BadOrigin(ValueError):
    """A message on a repartition topic without the headers that say where it came from."""


@dataclass(frozen=True)
class Origin:
    """Where a forwarded message's records were first consumed."""

    topic: str
    partition: int
    offset: int
    indexes: tuple[int, ...] | None  # None: the message was a single record, not an envelope

    def headers(self) -> list[tuple[str, bytes]]:
        h = [(TOPIC, self.topic.encode()), (PARTITION, str(self.partition).encode()),
             (OFFSET, str(self.offset).encode())]
        if self.indexes is not None:
            h.append((INDEXES, ",".join(map(str, self.indexes)).encode()))
        return h

    @classmethod
    def from_headers(cls, headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None) -> Origin:
        h = dict(headers or ())
        try:
            indexes = h.get(INDEXES)
            origin = cls(h[TOPIC].decode(), int(h[PARTITION]), int(h[OFFSET]),
                         tuple(int(i) for i in indexes.split(b",")) if indexes is not None else None)
        except KeyError as exc:
            raise BadOrigin(f"forwarded message without the {exc} header") from exc
        except ValueError as exc:  # UnicodeDecodeError is one
            raise BadOrigin(f"forwarded message with invalid source headers: {exc}") from exc
        if origin.partition < 0 or origin.offset < 0 or (origin.indexes is not None and not origin.indexes):
            raise BadOrigin(f"forwarded message with an invalid origin {origin}")
        return origin


@dataclass
class InPlace:
    """Which forwards a worker folds in place: the records of a source partition bound for a
    partition `target` that the same worker holds, folded straight into that partition's tables
    under the forwarded slot of their source (as the repartition topic's consumer would), instead
    of a trip through the broker. The reasoning is in `streams/repartition.py`, "Folded in place".

    Per rebalance generation (a new one starts afresh): (kind, source, target) goes in place once
    the worker has folded every forwarded record of `target` that could precede the in-place ones
    in their slot — everything on the repartition partition up to its end offset as first read in
    this generation (`end`), and up to after the last remote forward this worker sent there
    (`sent`) — and then stays in place for the rest of the generation. `folded` is the offset
    after the last repartition record folded in this generation; a committed offset counts too.

    Under steady load a worker's own forwards can keep `sent` one batch ahead of `folded` for
    ever: each batch not yet in place sends more. `own_forwards_ahead` names that case (the log's
    earlier contents folded, only this worker's own forwards left), in which the caller waits,
    bounded, for the repartition reader to fold them instead of sending more; a wait that runs
    out is not tried again for that target in the generation (`gave_up`), so a slow reader
    costs one bounded stall per rebalance, not one per batch. Waiting changes only when `decide`
    is asked again, never what it answers."""

    generation: object = None  # any value that changes at every rebalance
    in_place: set[tuple[str, int, int]] = field(default_factory=set)
    end: dict[tuple[str, int], int] = field(default_factory=dict)
    sent: dict[tuple[str, int], int] = field(default_factory=dict)
    folded: dict[tuple[str, int], int] = field(default_factory=dict)
    gave_up: set[tuple[str, int]] = field(default_factory=set)

    def begin(self, generation: object) -> None:
        """The state of `generation`: all that an earlier one decided or saw goes."""
        if generation != self.generation:
            self.generation = generation
            self.in_place, self.end, self.sent, self.folded, self.gave_up = set(), {}, {}, {}, set()

    def wants_end(self, kind: str, target: int) -> bool:
        """The repartition partition's end offset is still to be read in this generation."""
        return (kind, target) not in self.end

    def saw_end(self, kind: str, target: int, end: int) -> None:
        self.end.setdefault((kind, target), end)

    def forwarded(self, kind: str, target: int, offset: int) -> None:
        """A remote forward acknowledged at `offset` of the repartition partition."""
        self.sent[(kind, target)] = max(self.sent.get((kind, target), 0), offset + 1)

    def folded_to(self, kind: str, target: int, next_offset: int) -> None:
        """The repartition partition's records before `next_offset` are folded."""
        self.folded[(kind, target)] = max(self.folded.get((kind, target), 0), next_offset)

    def decide(self, kind: str, source: int, target: int, committed: int | None) -> bool:
        """Fold this (source, target)'s records in place now? The caller holds `target` and has
        read its end offset (`saw_end`); `committed` is the group's committed offset there."""
        key = (kind, source, target)
        if key in self.in_place:
            return True
        end = self.end.get((kind, target))
        if end is None:
            return False
        done = max(self.folded.get((kind, target), 0), committed or 0)
        if done >= max(end, self.sent.get((kind, target), 0)):
            self.in_place.add(key)
            return True
        return False

    def own_forwards_ahead(self, kind: str, target: int, committed: int | None) -> bool:
        """Is `target` folded past its end offset, with only this worker's own forwards there
        still to fold — and no wait for them has run out in this generation? Then waiting for
        the repartition reader brings `decide` to yes; sending more would move the mark again."""
        end = self.end.get((kind, target))
        if end is None or (kind, target) in self.gave_up:
            return False
        done = max(self.folded.get((kind, target), 0), committed or 0)
        return end <= done < self.sent.get((kind, target), 0)

    def give_up(self, kind: str, target: int) -> None:
        """A wait for `target`'s own forwards ran out: send through the broker for the rest of
        the generation unless the reader catches up by itself."""
        self.gave_up.add((kind, target))
