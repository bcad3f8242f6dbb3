"""`model-monitoring tail`: the reference consumer of what the service publishes.

It follows the drift, degraded, snapshot, completed and failed topics in its own consumer group,
prints each event on one line and, with `--webhook`, POSTs it as JSON (retries with exponential
backoff, then a dead-letter file). Offsets are committed only once an event was delivered or
dead-lettered; upstream is at-least-once, so events are deduplicated by `eventId` in-process
and the webhook gets an `Idempotency-Key` for the rest."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import orjson

from model_monitoring.streams.settings import Settings, load_settings
from model_monitoring.tables.trigger import JOB_NAME

KINDS = ("drift", "degraded", "snapshot", "completed", "failed")
RETRYABLE_STATUS = frozenset({408, 425, 429})
MAX_DRIFTED_SHOWN = 5


# ------------------------------------------------------------------ formatting (pure)
def clean(value: Any, limit: int = 120) -> str:
    """A wire value made safe for one terminal line: control characters escaped, truncated."""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else repr(ch)[1:-1] for ch in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt_num(value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return clean(value, 40)
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def fmt_time(value: Any, fallback_ms: int | None = None) -> str:
    """ISO-8601 UTC to the second, from an ISO string with a zone or epoch milliseconds."""
    moment: datetime | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value / 1000, UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return clean(value, 40)
        if moment.tzinfo is None:
            return clean(value, 40)
    elif fallback_ms is not None:
        moment = datetime.fromtimestamp(fallback_ms / 1000, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def _model(body: Mapping[str, Any]) -> str:
    text = f"{clean(body.get('tenantId'), 60)}:{clean(body.get('modelId'), 60)} v{clean(body.get('modelVersion'), 20)}"
    segment = body.get("segment")
    return text if segment is None else f"{text} segment={clean(segment, 40)}"


def _run(body: Mapping[str, Any]) -> str:
    return f"run={clean(body.get('jobRunId'), 80)}"


def _tenants(tenants: Any) -> str:
    if tenants is None:
        return "all"
    if isinstance(tenants, list):
        return ",".join(clean(t, 40) for t in tenants) if len(tenants) <= 3 else f"{len(tenants)}"
    return clean(tenants, 40)


def _as_float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _snapshot_summary(body: Mapping[str, Any]) -> str:
    features = body.get("features") if isinstance(body.get("features"), Mapping) else {}
    statuses = Counter(str(v.get("status")) for v in features.values() if isinstance(v, Mapping))
    drifted = sorted(((name, v) for name, v in features.items()
                      if isinstance(v, Mapping) and v.get("status") == "drift"),
                     key=lambda item: -_as_float(item[1].get("value")))
    parts = [f"n={fmt_num(body.get('sampleSize'))}",
             "features " + (" ".join(f"{s}={n}" for s, n in sorted(statuses.items())) or "none")]
    if drifted:
        shown = [f"{clean(name, 40)} {fmt_num(v.get('value'))} {clean(v.get('severity'), 10)}"
                 for name, v in drifted[:MAX_DRIFTED_SHOWN]]
        more = f", +{len(drifted) - MAX_DRIFTED_SHOWN} more" if len(drifted) > MAX_DRIFTED_SHOWN else ""
        parts.append(f"[{', '.join(shown)}{more}]")
    performance = body.get("performance") if isinstance(body.get("performance"), Mapping) else {}
    for metric, verdict in sorted(performance.items()):
        if isinstance(verdict, Mapping):
            parts.append(f"{clean(metric, 20)}={fmt_num(verdict.get('value'))} {clean(verdict.get('status'), 20)}")
    return " ".join(parts)


def format_event(kind: str, body: Mapping[str, Any], fallback_ms: int | None = None) -> str:
    """One readable line per event, its time first (UTC)."""
    if kind == "drift":
        return (f"{fmt_time(body.get('detectedAt'), fallback_ms)} DRIFT {clean(body.get('severity'), 10)} "
                f"{_model(body)} {clean(body.get('feature'), 60)} {clean(body.get('metric', 'psi'), 10)}="
                f"{fmt_num(body.get('value'))} (≥{fmt_num(body.get('threshold'))}) "
                f"n={fmt_num(body.get('sampleSize'))} {_run(body)}")
    if kind == "degraded":
        return (f"{fmt_time(body.get('detectedAt'), fallback_ms)} DEGRADED {_model(body)} "
                f"{clean(body.get('metric'), 10)}={fmt_num(body.get('value'))} "
                f"(>{fmt_num(body.get('threshold'))}, baseline {fmt_num(body.get('baseline'))}) "
                f"n={fmt_num(body.get('sampleSize'))} {_run(body)}")
    if kind == "snapshot":
        return (f"{fmt_time(body.get('windowEnd'), fallback_ms)} SNAPSHOT {_model(body)} "
                f"{_snapshot_summary(body)} {_run(body)}")
    if kind == "completed":
        duration = body.get("durationMs")
        took = f"{duration / 1000:.1f}s" if isinstance(duration, (int, float)) else "?"
        return (f"{fmt_time(body.get('completedAt'), fallback_ms)} COMPLETED {_run(body)} "
                f"tenants={_tenants(body.get('tenants'))} driftChecked={fmt_num(body.get('driftChecked'))} "
                f"driftDetected={fmt_num(body.get('driftDetected'))} "
                f"performanceChecked={fmt_num(body.get('performanceChecked'))} "
                f"performanceDegraded={fmt_num(body.get('performanceDegraded'))} duration={took}")
    if kind == "failed":
        return (f"{fmt_time(body.get('failedAt'), fallback_ms)} FAILED {_run(body)} "
                f"error={clean(body.get('error'), 300)}")
    raise ValueError(f"unknown event kind {kind!r}")


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


def backoff_delays(retries: int, base: float = 0.5, cap: float = 30.0) -> list[float]:
    """The waits before each retry: base, 2·base, 4·base … capped."""
    return [min(cap, base * 2 ** i) for i in range(retries)]


def retry_after_seconds(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None  # an HTTP date: the exponential backoff applies


# ------------------------------------------------------------------ delivery
@dataclass(frozen=True)
class TailEvent:
    kind: str
    topic: str
    partition: int
    offset: int
    key: str | None
    body: dict[str, Any]
    summary: str

    def payload(self) -> dict[str, Any]:
        """What the webhook receives: the contract's event with its kind and origin."""
        return {"type": self.kind, "topic": self.topic, "partition": self.partition,
                "offset": self.offset, "summary": self.summary, "event": self.body}


class DeliveryFailed(RuntimeError):
    """The last try failed and there is no dead-letter file: the offset stays uncommitted."""


@dataclass
class WebhookSink:
    """POSTs events as JSON; after the last try, appends them to the dead-letter file."""

    url: str
    retries: int = 5
    backoff: float = 0.5
    backoff_cap: float = 30.0
    timeout: float = 10.0
    dead_letter_file: Path | None = None
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    _session: Any = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--webhook must be an http(s) URL, not {clean(self.url, 80)!r}")

    @property
    def target(self) -> str:
        """The URL without its path and credentials (webhook paths often hold a token)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"

    async def __aenter__(self) -> WebhookSink:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    async def deliver(self, event: TailEvent) -> str:
        """'delivered' or 'dead-lettered'; raises DeliveryFailed when neither was possible."""
        import aiohttp

        body = orjson.dumps(event.payload())
        headers = {"Content-Type": "application/json", "User-Agent": "model-monitoring-tail",
                   "Idempotency-Key": event.key or f"{event.topic}/{event.partition}/{event.offset}",
                   "X-Model-Monitoring-Event": event.kind}
        delays = backoff_delays(self.retries, self.backoff, self.backoff_cap)
        error, attempts = "", 0
        for attempts in range(1, len(delays) + 2):
            wait_at_least = None
            try:
                async with self._session.post(self.url, data=body, headers=headers,
                                              allow_redirects=False) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        return "delivered"
                    error = f"HTTP {resp.status}"
                    if resp.status < 500 and resp.status not in RETRYABLE_STATUS:
                        break  # the receiver refuses this event: retrying will not help
                    wait_at_least = retry_after_seconds(resp.headers.get("Retry-After"))
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = f"{type(exc).__name__}: {clean(exc, 200)}"
            if attempts > len(delays):
                break
            await self.sleep(min(self.backoff_cap, max(delays[attempts - 1], wait_at_least or 0.0)))
        self._dead_letter(event, attempts, error)
        return "dead-lettered"

    def _dead_letter(self, event: TailEvent, attempts: int, error: str) -> None:
        where = f"{event.topic}[{event.partition}]@{event.offset}"
        if self.dead_letter_file is None:
            raise DeliveryFailed(f"{where} key={event.key}: {self.target} failed {attempts} time(s), "
                                 f"last {error}; no --dead-letter-file, so the offset stays uncommitted")
        record = {"failedAt": fmt_time(int(datetime.now(UTC).timestamp() * 1000)),
                  "attempts": attempts, "error": error, "webhook": self.target, **event.payload()}
        self.dead_letter_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.dead_letter_file, "ab") as f:
            f.write(orjson.dumps(record) + b"\n")
            f.flush()
            os.fsync(f.fileno())  # on disk before the offset is committed


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
    return {"drift": s.drift_topic, "degraded": s.degraded_topic, "snapshot": s.snapshot_topic,
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
    p = subparsers.add_parser(
        "tail", help="print the drift, degraded, snapshot and job events (and POST them to a webhook)",
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
