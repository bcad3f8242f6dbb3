"""Running the service as a user would, for the demo, the benchmarks and the tests: a worker
process started and stopped by PID, producing to and reading from topics, consumer lag."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from model_monitoring.commands.broker import Broker, free_port
from model_monitoring.streams.highwater import true_end_offsets
from model_monitoring.streams.settings import Settings


def service_env(bootstrap: str | Broker, data_dir: Path, *, app_id: str = "model-monitoring",
                topic_prefix: str = "", web_port: int | None = None,
                extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker process: every setting explicit, nothing inherited. Given a
    broker (not just its address), the worker also gets that broker's profile."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MODEL_MONITORING_", "KAFKA_"))}
    if not isinstance(bootstrap, str):
        env.update(bootstrap.worker_env())
        bootstrap = bootstrap.bootstrap
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MODEL_MONITORING_APP_ID": app_id,
        "MODEL_MONITORING_DATA_DIR": str(data_dir),
        "MODEL_MONITORING_WEB_PORT": str(web_port or free_port()),
        "PYTHONUNBUFFERED": "1",
        # a fresh HS256 secret per service; callers mint tokens from env[...] (≥ 32 bytes)
        "MODEL_MONITORING_JWT_SECRET": os.urandom(32).hex(),
    })
    if topic_prefix:
        for name, default in TOPIC_DEFAULTS.items():
            env[f"MODEL_MONITORING_{name.upper()}_TOPIC"] = topic_prefix + default
    env.update(extra or {})
    return env


TOPIC_DEFAULTS = {
    "features": "ml.inference.features", "outcomes": "ml.outcomes",
    "baselines": "ml.model.baselines", "trigger": "workflow.job.trigger",
    "drift": "ml.model.drift.detected", "degraded": "ml.model.performance.degraded",
    "drift_resolved": "ml.model.drift.resolved", "performance_recovered": "ml.model.performance.recovered",
    "snapshot": "ml.model.monitoring.snapshot", "completed": "workflow.job.completed",
    "failed": "workflow.job.failed",
}


SCRAPE_TIMEOUT_S = 10.0  # Prometheus's default scrape_timeout


@dataclass
class WorkerProcess:
    """One `model-monitoring worker`, its log in a file."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def web_port(self) -> int:
        return int(self.env["MODEL_MONITORING_WEB_PORT"])

    def command(self) -> list[str]:
        return [sys.executable, "-m", "model_monitoring.commands.cli", "worker"]

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as log:  # the child holds its own copy of the descriptor
            self.process = subprocess.Popen(
                self.command(), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def get(self, path: str, timeout: float = 2.0, headers: Mapping[str, str] | None = None
            ) -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.web_port}{path}", headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None,
             timeout: float = 5.0) -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.web_port}{path}", data=body,
                                     headers={"Content-Type": "application/json", **(headers or {})},
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds until /readyz answered 200; raises with the log tail if it never does."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                status, _ = self.get("/readyz", timeout=1.0)
                if status == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log_tail()}")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples matching the labels, from /metrics, waiting for the answer
        as long as Prometheus's default scrape timeout: a worker on a loaded machine in the middle
        of a rebalance (faust closes and opens a RocksDB store per partition, and collects garbage
        once per store) can take longer than a couple of seconds to answer, as one CI run's
        two-worker test showed (`TimeoutError: timed out` on a 2 s read)."""
        _, body = self.get("/metrics", timeout=SCRAPE_TIMEOUT_S)
        total = 0.0
        for line in body.decode().splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric_name = head.split("{", 1)[0]
            if metric_name != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the crash the invariants are about."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def json_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


# ------------------------------------------------------------------ Kafka helpers
async def topic_partitions(consumer: AIOKafkaConsumer, topics: Iterable[str], timeout: float = 5.0
                           ) -> list[TopicPartition]:
    """The partitions of `topics` (of those that exist), read from the broker's metadata.

    aiokafka's first metadata request, made by start(), names no topic: Apache Kafka answers it
    with no topic, the embedded broker with all of them. So on Kafka `partitions_for_topic` is
    None right after start() until a metadata update asks for every topic — and a lag or a read
    over "no partitions" silently came out as 0 or nothing."""
    names = list(topics)
    deadline = time.monotonic() + timeout
    while any(not consumer.partitions_for_topic(t) for t in names) and time.monotonic() < deadline:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call
        if any(not consumer.partitions_for_topic(t) for t in names):
            await asyncio.sleep(0.1)  # a topic just created, or not there at all
    return [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]


async def produce(bootstrap: str, messages: Iterable[tuple[str, bytes | None, bytes | None]],
                  linger_ms: int = 5, security: Mapping[str, Any] | None = None,
                  partitioner: Callable[..., int] | None = None) -> int:
    """Send (topic, key, value) in order; returns the count once all are acknowledged.
    `security`: aiokafka's security_protocol, sasl_* and ssl_context arguments, if any;
    `partitioner`: aiokafka's `partitioner` (key, all partitions, available) -> partition, to
    play a producer that does not partition like Java's client (murmur2, the default)."""
    extra: dict[str, Any] = {"partitioner": partitioner} if partitioner is not None else {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, **(security or {}),
                                max_batch_size=1 << 20, max_request_size=16 << 20, acks="all", **extra)
    await producer.start()
    n = 0
    try:
        pending = []
        for topic, key, value in messages:
            pending.append(await producer.send(topic, value=value, key=key))
            n += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


async def read_topic(bootstrap: str, topic: str, timeout: float = 5.0,
                     min_messages: int = 0, security: Mapping[str, Any] | None = None,
                     isolation_level: str = "read_uncommitted") -> list[Any]:
    """Every message of a topic from the beginning (aiokafka ConsumerRecords), until no new one
    arrives for `timeout` seconds once at least `min_messages` were read. `read_committed` leaves
    out the records of aborted transactions (what an exactly-once worker killed mid-transaction
    wrote), and stops at the end of the last transaction still open."""
    client = {"bootstrap_servers": bootstrap, **(security or {})}
    consumer = AIOKafkaConsumer(**client, enable_auto_commit=False, isolation_level=isolation_level,
                                auto_offset_reset="earliest", group_id=None,
                                fetch_max_bytes=16 << 20, max_partition_fetch_bytes=16 << 20)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, [topic])
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await true_end_offsets(client, tps, await consumer.end_offsets(tps))
        out: list[Any] = []
        started = time.monotonic()
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batch.values():
                out.extend(records)
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(positions[tp] >= ends[tp] for tp in tps):
                if len(out) >= min_messages:
                    return out
                ends = await true_end_offsets(client, tps, await consumer.end_offsets(tps))  # more may arrive
            if time.monotonic() - started > timeout:
                return out
    finally:
        await consumer.stop()


Client = str | Mapping[str, Any]
"""How to reach the broker: its bootstrap address, or a secured broker's connection settings
(`Settings.kafka_client_kwargs()`)."""


class LagUnknown(RuntimeError):
    """A topic asked about had no partitions in the broker's metadata: its lag is not known."""


async def group_lag(client: Client, group_id: str, topics: list[str]) -> int:
    """Messages not yet committed by the consumer group on these topics (read with a manually
    assigned consumer of that group, which never joins it). `LagUnknown` when a topic has no
    partitions in the metadata after `topic_partitions`' wait: a broker that is not serving them
    yet answers so (Apache Kafka fenced for a moment after a stall: "No broker metadata found in
    MetadataResponse"), and counting such a topic as lag 0 ended the reliability bench's wait
    while the worker still had the end of the log to fold."""
    kwargs = {"bootstrap_servers": client} if isinstance(client, str) else dict(client)
    consumer = AIOKafkaConsumer(**kwargs, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topics)
        missing = sorted(set(topics) - {tp.topic for tp in tps})
        if missing:
            raise LagUnknown(f"no partitions in the broker's metadata for {', '.join(missing)}")
        if not tps:
            return 0
        consumer.assign(tps)
        ends = await true_end_offsets(kwargs, tps, await consumer.end_offsets(tps))
        lag = 0
        for tp in tps:
            done = await consumer.committed(tp)
            lag += max(0, ends[tp] - (done or 0))
        return lag
    finally:
        await consumer.stop()


async def consumed(client: Client, group_id: str, topics: list[str]) -> bool:
    """The group has committed every message of `topics` (lag 0 against the true end offsets),
    on two reads in a row: one read takes the end offsets before the commits, so an output that
    a commit made during the read (a record forwarded to a repartition topic, which is one of
    the topics) would not be seen by it. A lag not known (`LagUnknown`) is not consumed."""
    try:
        return await group_lag(client, group_id, topics) == 0 and await group_lag(client, group_id, topics) == 0
    except LagUnknown:
        return False


def ingest_topics(s: Settings) -> list[str]:
    """The topics a run's statistics are folded from: the inputs, and at least once the
    repartition topics too (a record that arrived on another partition than its predictionId's
    is folded only once it has come back through one, streams/repartition.py). Exactly once,
    those end with a commit marker that no consumer commit reaches: the inputs only (their
    forwards are committed with them)."""
    topics = [s.features_topic, s.outcomes_topic]
    if s.processing_guarantee == "at_least_once":
        topics += [s.repartition_topic(s.features_topic), s.repartition_topic(s.outcomes_topic)]
    return topics


async def until_ingested(s: Settings, timeout: float, every: float = 1.0) -> None:
    """Until the worker group has `consumed` everything published so far to `ingest_topics`;
    TimeoutError, with the lag left, after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    client, topics = s.kafka_client_kwargs(), ingest_topics(s)
    while not await consumed(client, s.app_id, topics):
        if time.monotonic() > deadline:
            lag = await group_lag(client, s.app_id, topics)
            raise TimeoutError(f"the worker group {s.app_id} still has {lag:,} messages of {', '.join(topics)} "
                               f"to take in after {timeout:.0f}s: is a worker of that group (MODEL_MONITORING_APP_ID) running?")
        await asyncio.sleep(every)


async def latest_values(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    """A changelog read as a table: the last value per key, tombstones removing the key."""
    state: dict[bytes, bytes] = {}
    for rec in await read_topic(bootstrap, topic, timeout=2.0):
        if rec.value is None:
            state.pop(rec.key, None)
        else:
            state[rec.key] = rec.value
    return state
