"""`model-monitoring tail`: the reference consumer of what the service publishes.

It follows the drift, degraded, resolved, recovered, snapshot, completed and failed topics in its
own consumer group, prints each event on one line and, with `--webhook`, POSTs it as JSON
(retries with exponential backoff, then a dead-letter file). Offsets are committed only once an event was delivered or
dead-lettered; upstream is at-least-once, so events are deduplicated by `eventId` in-process
and the webhook gets an `Idempotency-Key` for the rest."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from model_monitoring.commands.tail_format import clean, format_event
from model_monitoring.commands.tail_webhook import DeliveryFailed, TailEvent, WebhookSink
from model_monitoring.streams.settings import Settings, load_settings
from model_monitoring.tables.trigger import JOB_NAME

KINDS = ("drift", "degraded", "resolved", "recovered", "snapshot", "completed", "failed")


# ------------------------------------------------------------------ deduplication
def dedup_key(kind: str, body: Mapping[str, Any]) -> str | None:
    """What makes two deliveries the same event: its `eventId`, or for the events without one
    the fields the service derives their identity from."""
    event_id = body.get("eventId")
    if isinstance(event_id, str) and event_id:
        return f"{kind}|{event_id}"
    if kind == "snapshot":
        return "|".join(["snapshot", *(str(body.get(k)) for k in
                                       ("jobRunId", "tenantId", "modelId", "modelVersion", "segment"))])
    if kind in ("completed", "failed") and body.get("jobRunId"):
        return f"{kind}|{body['jobRunId']}"
    return None


@dataclass
class SeenEvents:
    """The keys already handled by this process, the oldest forgotten past `capacity`."""

    capacity: int = 100_000
    _keys: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)


# ------------------------------------------------------------------ the consumer
@dataclass
class Tail:
    """Handles one consumer record at a time: decode, deduplicate, print, deliver."""

    kind_of_topic: Mapping[str, str]
    out: IO[str]
    err: IO[str]
    sink: WebhookSink | None = None
    seen: SeenEvents = field(default_factory=SeenEvents)
    handled: int = 0

    async def handle(self, record: Any) -> None:
        kind = self.kind_of_topic[record.topic]
        where = f"{record.topic}[{record.partition}]@{record.offset} key={clean(record.key, 80)}"
        try:
            body = orjson.loads(record.value) if record.value is not None else None
        except orjson.JSONDecodeError as exc:
            print(f"tail: skipped {where}: not JSON ({exc})", file=self.err, flush=True)
            return
        if not isinstance(body, dict):
            print(f"tail: skipped {where}: not a JSON object", file=self.err, flush=True)
            return
        if kind in ("completed", "failed") and body.get("job") != JOB_NAME:
            return  # another job's message on the shared workflow topic
        key = dedup_key(kind, body)
        if key is not None and key in self.seen:
            return
        summary = format_event(kind, body, getattr(record, "timestamp", None))
        print(summary, file=self.out, flush=True)
        if self.sink is not None:
            event = TailEvent(kind, record.topic, record.partition, record.offset, key, body, summary)
            if await self.sink.deliver(event) == "dead-lettered":
                print(f"tail: {where} not delivered to {self.sink.target}: appended to "
                      f"{self.sink.dead_letter_file}", file=self.err, flush=True)
        if key is not None:
            self.seen.add(key)
        self.handled += 1


@dataclass(frozen=True)
class TailOptions:
    group: str = "model-monitoring-tail"
    from_beginning: bool = False
    kinds: tuple[str, ...] = KINDS
    webhook: str | None = None
    webhook_retries: int = 5
    webhook_backoff: float = 0.5
    webhook_timeout: float = 10.0
    dead_letter_file: Path | None = None
    max_events: int | None = None


def topics_by_kind(s: Settings) -> dict[str, str]:
    return {"drift": s.drift_topic, "degraded": s.degraded_topic, "resolved": s.drift_resolved_topic,
            "recovered": s.performance_recovered_topic, "snapshot": s.snapshot_topic,
            "completed": s.completed_topic, "failed": s.failed_topic}


async def run_tail(s: Settings, opts: TailOptions, out: IO[str] = sys.stdout,
                   err: IO[str] = sys.stderr, stop: asyncio.Event | None = None) -> int:
    """Consume until `stop`, `max_events` events, or a delivery that could not be completed."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import CommitFailedError, IllegalStateError

    stop = stop or asyncio.Event()
    kind_of = {topic: kind for kind, topic in topics_by_kind(s).items() if kind in opts.kinds}
    consumer = AIOKafkaConsumer(
        *kind_of, **s.kafka_client_kwargs(), group_id=opts.group, client_id="model-monitoring-tail",
        enable_auto_commit=False, auto_offset_reset="earliest" if opts.from_beginning else "latest",
        # a new topic is seen within seconds; 6 s is the least Kafka allows and lets the embedded
        # broker form the group in ~3 s (it waits about half the session timeout)
        metadata_max_age_ms=5_000, session_timeout_ms=6_000, heartbeat_interval_ms=1_000,
        rebalance_timeout_ms=6_000)
    sink = (WebhookSink(opts.webhook, opts.webhook_retries, opts.webhook_backoff,
                        timeout=opts.webhook_timeout, dead_letter_file=opts.dead_letter_file)
            if opts.webhook else None)
    tail = Tail(kind_of, out, err, sink)
    print(f"tail: group {opts.group} on {s.kafka_bootstrap_servers}: {', '.join(kind_of)}",
          file=err, flush=True)
    await consumer.start()
    try:
        if sink is not None:
            await sink.__aenter__()
        while not stop.is_set():
            if opts.max_events is not None and tail.handled >= opts.max_events:
                return 0
            # with a webhook, one event per poll: each is committed as soon as it is delivered,
            # and retries (up to a minute or so) never hold a batch past max.poll.interval.ms
            batch = await consumer.getmany(timeout_ms=500, max_records=1 if sink else 100)
            done: dict[TopicPartition, int] = {}
            try:
                for tp, records in batch.items():
                    for record in records:
                        if opts.max_events is not None and tail.handled >= opts.max_events:
                            break
                        await tail.handle(record)
                        done[tp] = record.offset + 1
            except DeliveryFailed as exc:
                print(f"tail: {exc}", file=err, flush=True)
                return 1
            finally:
                if done:
                    try:
                        await consumer.commit(done)
                    except (CommitFailedError, IllegalStateError) as exc:
                        # partitions moved to another member: it redelivers, receivers dedup
                        print(f"tail: commit failed ({exc}); events may be delivered again",
                              file=err, flush=True)
        return 0
    finally:
        if sink is not None:
            await sink.__aexit__()
        await consumer.stop()


# ------------------------------------------------------------------ the command
def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = set(kinds) - set(KINDS)
    if not kinds or unknown:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(KINDS)}")
    return kinds


def add_tail_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "tail", help="print the drift, degraded, resolution, snapshot and job events (and POST them to a webhook)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (or KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--from-beginning", action="store_true",
                   help="when the group has no committed offsets, start at the oldest event "
                        "(default: only new events)")
    p.add_argument("--group", default="model-monitoring-tail", help="consumer group (default: %(default)s)")
    p.add_argument("--kinds", type=_kinds, default=KINDS, metavar="LIST",
                   help=f"comma-separated subset of {','.join(KINDS)} (default: all)")
    p.add_argument("--webhook", metavar="URL", help="POST each event as JSON to this http(s) URL")
    p.add_argument("--webhook-retries", type=_non_negative_int, default=5, metavar="N",
                   help="retries after the first try (default: %(default)s)")
    p.add_argument("--webhook-backoff", type=float, default=0.5, metavar="SECONDS",
                   help="wait before the first retry, doubled each retry up to 30 s (default: %(default)s)")
    p.add_argument("--webhook-timeout", type=float, default=10.0, metavar="SECONDS")
    p.add_argument("--dead-letter-file", type=Path, metavar="PATH",
                   help="append events the webhook did not take after the last try (JSON lines); "
                        "without it such an event stops the tail, its offset uncommitted")
    p.add_argument("--max-events", type=_non_negative_int, metavar="N", help="stop after N events")
    p.set_defaults(func=cmd_tail)
    return p


def cmd_tail(args: argparse.Namespace) -> int:
    overrides = {"kafka_bootstrap_servers": args.bootstrap} if getattr(args, "bootstrap", None) else {}
    config = getattr(args, "config", None)
    settings = load_settings(os.environ, Path(config) if config else None, **overrides)
    opts = TailOptions(group=args.group, from_beginning=args.from_beginning, kinds=tuple(args.kinds),
                       webhook=args.webhook, webhook_retries=args.webhook_retries,
                       webhook_backoff=args.webhook_backoff, webhook_timeout=args.webhook_timeout,
                       dead_letter_file=args.dead_letter_file, max_events=args.max_events)
    if opts.webhook:
        try:
            WebhookSink(opts.webhook)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)  # finish the batch, commit, leave the group
        return await run_tail(settings, opts, stop=stop)

    return asyncio.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m model_monitoring.commands.tail …`, the same as `model-monitoring tail …`."""
    parser = argparse.ArgumentParser(prog="model-monitoring")
    parser.add_argument("--config")
    add_tail_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["tail", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
