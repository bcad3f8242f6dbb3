"""Forwarding mispartitioned records through the internal repartition topics, exactly once in
effect: the join then holds whatever partitioner the producers used.

Which records. A record belongs to partition `murmur2(predictionId) mod n`
(`tables/partitioning.py`), decided per record from its predictionId, not from the message key:
the predictionId is what the join matches on, and it is there when the key is not (no key, an
envelope keyed by its first record, a key that is something else). A Java or aiokafka producer
keyed by predictionId already puts every record there, so only other producers' traffic (CRC32
from librdkafka, envelopes, null keys) is forwarded; the rest takes the direct path. A message
that does not decode or validate has no predictionId to route by: it goes to the DLQ from where
it arrived, with its true coordinates, as before. Too late or not (older than the partition's
event-time mark minus the retention or join TTL) is decided there too, before forwarding, with
a mark that every record arriving there moves, forwarded or not (`admit_on_arrival`): a record
is too late exactly when it would be without forwarding.

How. The records of one source message bound for one partition become one message on
`{app id}.features-repartition` (or `.outcomes-repartition`), on that partition, with headers
naming their origin: source topic, partition, offset, and their indexes in an envelope
(`tables/forwarding.py`). The repartition topics have the inputs' partition count, so faust's
assignor assigns partition p of all of them to one worker: the destination fold runs where the
partition's tables are, under the same partition lock. Forwarded records are counted once in
`model_monitoring_mispartitioned_records_total{topic}` (the source topic).

Why forwarded twice is still counted once. The destination folds a forwarded record under the
watermark slot of its *source* partition (`f@q`, `o@q`) with its *source* offset, and its join
entry names (slot, source offset, index) as its source: the record is the same event as far as
the fold can tell, whichever path or copy brought it. The repartition topic's own offsets would
not do: a second copy gets a new offset, and would be dropped as a genuine duplicate only while
its join entry is still there, with the duplicate counters off.
- A batch's forwards are acknowledged by the broker before this shell returns, so before its
  events are acknowledged and their offsets can commit (and before the batch's own folds). A
  crash before that redelivers the
  batch, which forwards the same records again with the same origin; forwards cannot be lost.
- One producer sends a source partition's forwards in offset order, and keeps one request in
  flight per broker (aiokafka; a transactional producer is also idempotent), so each slot's
  first copies reach the destination in source order, and later copies are repeats of records
  before them — the shape of a consumer that rewinds to its last commit, which the direct path's
  watermarks already absorb (tests/unit/test_ingest_fold.py). After a rebalance, forwards still
  in flight from the previous owner are copies of records at or after the committed offset,
  which the new owner forwards too: repeats again.
- Unlike a rewind, a repeat can sit in the same destination batch as its first copy (both
  arrived since the destination's last commit), where no watermark has moved yet: the fold
  skips an event it already folded in the same batch (`tables/ingest._repeated`).
- The records of one source message bound for one partition travel in one message, so they are
  folded in one batch: the watermark is per offset, and an envelope's records share theirs.
- Direct and forwarded records of a partition are folded under different slots, each with its
  own watermarks and event-time mark, so how the two streams interleave (which differs from run
  to run) changes nothing: the join is order-free (an early outcome waits for its prediction).
- exactly_once: forwards go in the *source* partition's transaction, committed with the source
  offsets they were read at (faust would put them in the destination's, which can still abort
  after the source offsets committed: the records would be lost); destinations read
  read_committed.
- The property test (tests/unit/test_forwarding.py) runs all of it — CRC32-partitioned
  envelopes, retries and early outcomes, crashes that lose table writes and the tail of the
  forwards — against inputs partitioned by murmur2 in the first place; it found the repeat
  inside one batch.

Ordering. A producer that partitions by key sends all records of one key (and topic) to one
partition, so they take one path and keep their order: "the first prediction of a predictionId
counts" still means the first in its source partition. Records without a key may be spread over
partitions by their producer; then the first to reach the destination counts.

Folded in place (at least once; `MODEL_MONITORING_FORWARD_IN_PLACE`, on by default). Where the
worker that reads a source partition q also holds the destination p — a worker alone holds them
all — it folds the records bound for p straight into p's tables, under p's partition lock, with
the same slot (`f@q`), offsets and envelope indexes that the trip through the repartition topic
would give them: the same event as far as the fold can tell, whichever way it came. So the two
ways can replace each other at any rebalance, and a record folded in place before a crash and
forwarded after it (p went elsewhere) is still counted once. What must not happen is the slot's
watermark passing a forward still in p's repartition log: an in-place fold of q's offset 120
before the log's copy of offset 110 is folded would make that copy look like a repeat, and it
would be lost. So within one rebalance generation (`WriteGate.generation`), q's records go in
place only once p's log is folded up to where it ended when this generation first looked
(everything forwarded by q's earlier owners, acknowledged before they committed q, lies below)
and past every forward this worker sent there itself; from then on they stay in place until the
next rebalance, which starts afresh (`tables/forwarding.InPlace`; the property test
tests/unit/test_in_place.py runs rebalances that move p to and fro, rewinds to the committed
offsets and every interleaving of the two logs' batches: each record is applied once; folding in
place whenever p is held loses records there). Under steady load the worker's own forwards can
keep p's log one batch ahead of its reader for ever (each batch not yet in place sends more); so
when only its own forwards are left there, q's batch first waits, bounded (at least 1 s, five
times `MODEL_MONITORING_BATCH_WITHIN_SECONDS`), for p's reader to fold them, instead of sending
more (`IngestShell.await_own_forwards`; once per target and generation when the wait runs out).
The folds write p's tables from q's actor; the
commit of q's offsets waits for every table write queued before it (streams/producer_buffer.py),
as for the direct path. Exactly once keeps the trip through the broker: the forwards belong to
q's transaction. Counted in `model_monitoring_mispartitioned_records_total` as before, and in
`model_monitoring_folded_in_place_records_total`.

Cost. A forwarded record crosses the broker once more and is decoded and validated again; folded
in place, it costs what a record that arrived on its own partition does.
Every record's partition is computed, a batch's together (`partitions_of_predictions`: ~3 µs a
record in a batch of 500, against ~35 µs one at a time in Python, measured on the shared test
machine under load)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import faust

from model_monitoring.streams.transactions import TransactionManager


@dataclass(frozen=True)
class Outgoing:
    """One forwarded message."""

    partition: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


async def send_forwards(app: faust.App, topic: str, source_topic: str, source_partition: int,
                        messages: Sequence[Outgoing]) -> dict[int, int]:
    """Send in order and wait until the broker has acknowledged every one; returns the highest
    offset each destination partition acknowledged (what `InPlace` waits to see folded)."""
    if not messages:
        return {}
    if app.in_transaction:
        transactions = cast(TransactionManager, app.consumer.transactions)
        pending = [await transactions.send_for_source(source_topic, source_partition, topic, m.key,
                                                      m.value, m.partition, m.headers)
                   for m in messages]
    else:
        # the producer itself, not Topic.send: no per-message event-loop turns, and no sensors
        producer = app.producer
        pending = [await producer.send(topic, m.key, m.value, m.partition, None, m.headers)
                   for m in messages]
    highest: dict[int, int] = {}
    for message, meta in zip(messages, await asyncio.gather(*pending), strict=True):
        offset = getattr(meta, "offset", None)
        if isinstance(offset, int):
            highest[message.partition] = max(highest.get(message.partition, -1), offset)
    return highest
