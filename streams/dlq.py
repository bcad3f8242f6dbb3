"""Dead-letter routing: nothing is skipped silently. Each unusable message (or record of an
envelope) goes to `<topic>.dlq` with its original key and bytes and headers naming the reason,
the source topic, partition and offset; a counter per topic and reason; a log line that names
topic, partition, offset and key."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from faust.types import TopicT

from model_monitoring.streams.metrics import Metrics

log = logging.getLogger("model_monitoring.dlq")


@dataclass(frozen=True)
class DeadLetter:
    source_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str
    index: int | None = None  # the record's position in an envelope

    def headers(self) -> list[tuple[str, bytes]]:
        h = [("error", self.reason.encode()), ("detail", self.detail.encode("utf-8", "replace")),
             ("source.topic", self.source_topic.encode()),
             ("source.partition", str(self.partition).encode()),
             ("source.offset", str(self.offset).encode())]
        if self.index is not None:
            h.append(("source.index", str(self.index).encode()))
        return h


async def send_dead_letters(dlq: TopicT, letters: list[DeadLetter], metrics: Metrics) -> None:
    for letter in letters:
        log.warning("dead letter %s: topic=%s partition=%d offset=%d index=%s key=%r: %s",
                    letter.reason, letter.source_topic, letter.partition, letter.offset,
                    letter.index, (letter.key or b"")[:64], letter.detail)
        await dlq.send(key=letter.key, value=letter.value, headers=letter.headers())
        # counted once handed to the producer: a count that went first could be seen by a
        # reader (a test waiting on it) before a send held up by a new topic's leader election
        metrics.dlq.labels(letter.source_topic, letter.reason).inc()
