"""Reading the repartition topics: forwarded messages back into records of their source
partition, for the fold to count under that partition's watermark slot (streams/repartition.py).

A record that cannot be used is dead-lettered under its *origin* — the input topic, partition,
offset and envelope index where the producer's message sits — as if it had arrived directly. A
message on a repartition topic without a readable origin (not written by this service) is
dead-lettered under its own coordinates, reason `bad_forward`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from faust.types import EventT

from model_monitoring.schemas.fast_decode import Decoded, FastDecoder
from model_monitoring.schemas.rejection import MessageRejected
from model_monitoring.schemas.validation import decode_json, split_envelope
from model_monitoring.streams.app import Monitor
from model_monitoring.streams.dlq import DeadLetter
from model_monitoring.tables.forwarding import BadOrigin, Origin

BAD_FORWARD = "bad_forward"


@dataclass(frozen=True)
class FastItem:
    """A record of an envelope the fast path decoded: its own JSON is split out of the message
    only if it is dead-lettered."""

    decoded: Decoded
    position: int

    def raw(self) -> msgspec.Raw:
        return self.decoded.raw(self.position)


@dataclass
class ForwardedBatch:
    """A batch of forwarded records, by source partition, each list in source order."""

    source_topic: str
    by_source: dict[int, list[tuple[int, int, Any]]] = field(default_factory=dict)
    letters: list[DeadLetter] = field(default_factory=list)
    # (source partition, offset, index) -> (key, the record, the message bytes, enveloped?)
    originals: dict[tuple[int, int, int], tuple[bytes | None, Any, bytes | None, bool]] = field(default_factory=dict)

    def dead_letter(self, partition: int, offset: int, index: int, reason: str, detail: str) -> DeadLetter:
        """A record the fold rejected, named by its origin, with its own bytes."""
        key, item, value, enveloped = self.originals[(partition, offset, index)]
        if isinstance(item, FastItem):  # kept by the fast path: the record as it came
            item = orjson.loads(bytes(item.raw()))
        if enveloped:
            return DeadLetter(self.source_topic, partition, offset, key, orjson.dumps(item), reason,
                              detail, index)
        return DeadLetter(self.source_topic, partition, offset, key, value, reason, detail)


def parse_forwarded(events: Sequence[EventT], kind: str, source_topic: str, monitor: Monitor,
                    make: Callable[[Any], Any], fast: FastDecoder | None = None) -> ForwardedBatch:
    """Decode and validate forwarded messages (validated once already where they arrived; a
    message on an internal topic is checked all the same). A message the fast path
    (schemas/fast_decode.py) takes whole, in the shape its origin says, is decoded there; any
    other takes the full way."""
    s, validators = monitor.settings, monitor.validators
    max_bytes = s.max_message_bytes
    batch = ForwardedBatch(source_topic)
    for event in events:
        msg = event.message
        try:
            origin = Origin.from_headers(msg.headers)
            if origin.topic != source_topic:
                raise BadOrigin(f"forwarded from {origin.topic!r}, not from {source_topic!r}")
        except BadOrigin as exc:
            batch.letters.append(DeadLetter(msg.topic, msg.partition, msg.offset, msg.key, msg.value,
                                            BAD_FORWARD, str(exc)))
            continue
        enveloped = origin.indexes is not None
        value = msg.value
        decoded = fast.decode(value) if fast is not None else None
        if decoded is not None and decoded.enveloped == enveloped and (
                origin.indexes is None or len(origin.indexes) == len(decoded.records)):
            records = batch.by_source.setdefault(origin.partition, []) if decoded.records else []
            for position, record in enumerate(decoded.records):
                index = origin.indexes[position] if origin.indexes is not None else 0
                kept = FastItem(decoded, position) if enveloped else None
                batch.originals[(origin.partition, origin.offset, index)] = (msg.key, kept, value, enveloped)
                records.append((origin.offset, index, record))
            continue
        try:
            obj = decode_json(value, max_bytes)
            items = split_envelope(obj) if enveloped else [obj]
            if origin.indexes is not None and len(items) != len(origin.indexes):
                raise MessageRejected(BAD_FORWARD, f"{len(items)} records and {len(origin.indexes)} indexes")
        except MessageRejected as exc:
            batch.letters.append(DeadLetter(source_topic, origin.partition, origin.offset, msg.key,
                                            msg.value, exc.reason, exc.detail))
            continue
        for position, item in enumerate(items):
            index = origin.indexes[position] if origin.indexes is not None else 0
            batch.originals[(origin.partition, origin.offset, index)] = (msg.key, item, msg.value, enveloped)
            try:
                validators.validate(kind, item)
                record = make(item)
            except MessageRejected as exc:
                batch.letters.append(batch.dead_letter(origin.partition, origin.offset, index,
                                                       exc.reason, exc.detail))
                continue
            batch.by_source.setdefault(origin.partition, []).append((origin.offset, index, record))
    return batch
