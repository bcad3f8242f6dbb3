"""Ingest benchmark: the practical limit of this work without faust, against the real worker.

    .venv/bin/python -m bench.ingest [--records 200000] [--partitions 4]

Starts the bundled broker on a free loopback port, pre-produces N inference records (25
features: 20 numeric, 5 categorical, ~700 bytes) as single-record messages to one topic and as
envelopes of 100 to another, then measures, for each: (a) a plain aiokafka consumer doing the
same work (getmany, orjson, schema validation, the project's binning, one changelog message per
(partition, tenant, model, version, segment, day) per batch, commit) and (b) the worker process
ingesting the records into its tables. Prints a table, then one JSON line. Stops all it starts."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from model_monitoring.commands.broker import EmbeddedBroker, free_port
from model_monitoring.commands.harness import WorkerProcess, latest_values, produce, service_env
from model_monitoring.schemas.validation import (
    Validators,
    decode_json,
    format_timestamp,
    parse_timestamp_ms,
    split_envelope,
)
from model_monitoring.tables.baseline import Baseline, build_baseline
from model_monitoring.tables.histogram import count_batch
from model_monitoring.tables.partial import PartialState, is_partial_key

TENANTS = ("acme", "globex", "initech", "umbrella")
MODEL, VERSION = "bench-model", "1"
CATEGORIES = tuple(f"category-{i:02d}" for i in range(12))
DAY_MS = 86_400_000
END_MS = 1_795_000_000_000
ENVELOPE = 100
BATCH = 2000          # records per plain batch, as the worker's default MODEL_MONITORING_BATCH_SIZE
FETCH_BYTES = 16 << 20


# ------------------------------------------------------------------ the records
def bench_records(n: int, seed: int = 3, start: int = 0) -> Iterator[dict[str, Any]]:
    """Deterministic inference records of 25 features, ~700 bytes of JSON each."""
    rng = np.random.default_rng(seed)
    chunk = 10_000
    for base in range(0, n, chunk):
        m = min(chunk, n - base)
        numeric = np.round(rng.lognormal(3.0, 1.0, size=(m, 20)) * (1 + np.arange(20)), 3)
        missing = rng.random((m, 20)) < 0.02
        cats = rng.integers(0, len(CATEGORIES), size=(m, 5))
        scores = np.round(rng.random(m), 6)
        for i in range(m):
            k = start + base + i
            features: dict[str, Any] = {
                f"numeric_{j:02d}": None if missing[i, j] else float(numeric[i, j]) for j in range(20)}
            features.update({f"cat_{j}": CATEGORIES[cats[i, j]] for j in range(5)})
            yield {"predictionId": f"bench-{seed}-{k:09d}", "tenantId": TENANTS[k % len(TENANTS)],
                   "modelId": MODEL, "modelVersion": VERSION,
                   "timestamp": format_timestamp(END_MS - (k % 3) * DAY_MS - (k % 1000) * 1000),
                   "prediction": float(scores[i]), "segment": None, "features": features}


def bench_baseline() -> Baseline:
    return build_baseline(list(bench_records(5000, seed=99)), model_id=MODEL, model_version=VERSION,
                          tenant_id=None, task="classification")


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in names])
    finally:
        await admin.close()


async def preproduce(bootstrap: str, n: int, single: str, envelopes: str) -> tuple[int, float]:
    """Produce the records both ways; returns (bytes of the single messages, mean size)."""
    total = 0

    def singles() -> Iterator[tuple[str, bytes, bytes]]:
        nonlocal total
        for rec in bench_records(n):
            value = orjson.dumps(rec)
            total += len(value)
            yield single, rec["predictionId"].encode(), value

    def enveloped() -> Iterator[tuple[str, bytes, bytes]]:
        batch: list[dict[str, Any]] = []
        for rec in bench_records(n):
            batch.append(rec)
            if len(batch) == ENVELOPE:
                yield envelopes, batch[0]["predictionId"].encode(), orjson.dumps({"records": batch})
                batch = []
        if batch:
            yield envelopes, batch[0]["predictionId"].encode(), orjson.dumps({"records": batch})

    await produce(bootstrap, singles())
    await produce(bootstrap, enveloped())
    return total, total / n


# ------------------------------------------------------------------ (a) the plain consumer
async def plain_consume(bootstrap: str, topic: str, changelog: str, n: int, baseline: Baseline,
                        timeout: float) -> tuple[float, float]:
    """(records/s, CPU seconds) of the same work without faust, first record received to N
    committed; CPU is this process's, so the plain consumer's."""
    validators = Validators()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"plain-{uuid.uuid4().hex[:8]}",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_bytes=FETCH_BYTES, max_partition_fetch_bytes=FETCH_BYTES)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 << 20,
                                max_request_size=FETCH_BYTES)
    await consumer.start()
    await producer.start()
    done, started, cpu_started = 0, 0.0, 0.0
    deadline = time.monotonic() + timeout
    try:
        while done < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"plain consumer: {done} of {n} records after {timeout:.0f}s")
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            if not batches:
                continue
            if not started:
                started, cpu_started = time.perf_counter(), time.process_time()
            sends = []
            for tp, messages in batches.items():
                groups: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
                for msg in messages:
                    for item in split_envelope(decode_json(msg.value, 4 << 20)):
                        validators.validate("features", item)
                        day = parse_timestamp_ms(item["timestamp"]) // DAY_MS
                        groups[(tp.partition, item["tenantId"], item["modelId"], item["modelVersion"],
                                item.get("segment") or "", day)].append(item["features"])
                        done += 1
                for key, features in groups.items():
                    value = orjson.dumps(count_batch(baseline, features).to_json())
                    sends.append(await producer.send(changelog, value, key="|".join(map(str, key)).encode(),
                                                     partition=tp.partition))
            await asyncio.gather(*sends)
            await consumer.commit()
        return done / (time.perf_counter() - started), time.process_time() - cpu_started
    finally:
        await producer.stop()
        await consumer.stop()


@dataclass
class Plain:
    rps: float
    cpu_s: float


# ------------------------------------------------------------------ (b) the worker
@dataclass
class WorkerRun:
    rps: float            # N / (the poll that saw all N consumed - /readyz first answered 200)
    rps_first_to_last: float  # from the first poll that saw records consumed (NaN: one lump)
    ready_s: float
    cpu_s: float          # CPU seconds of the worker process from ready to all N consumed
    peak_rss_mb: float
    binned: int           # records counted with the baseline's bins (from the partials changelog)


def proc_status(pid: int) -> tuple[float, float]:
    """(peak RSS MB, CPU seconds) of a live process."""
    hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return hwm, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


VARIANT = """
import importlib, json, os, sys
import model_monitoring.streams.app
scheme, overrides = json.loads(sys.argv[1])
def value(text):
    if ":" in text and not text.startswith(("{", "[", '"')):
        module, _, attr = text.partition(":")
        return getattr(importlib.import_module(module), attr)
    try:
        return json.loads(text)
    except ValueError:
        return text
os.environ["MODEL_MONITORING_KAFKA_TRANSPORT"] = scheme
service_settings = model_monitoring.streams.app.faust_settings
model_monitoring.streams.app.faust_settings = lambda s: {**service_settings(s), **{k: value(v) for k, v in overrides.items()}}
from model_monitoring.commands.cli import main
sys.exit(main(["worker"]))
"""


@dataclass
class Variant:
    """The worker as shipped, or with another transport / faust settings, to measure a change."""

    scheme: str = "mmkafka"
    overrides: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # service settings (MODEL_MONITORING_...)

    def worker(self, env: dict[str, str], log_path: Path) -> WorkerProcess:
        env = {**env, **self.env}
        if self.scheme == "mmkafka" and not self.overrides:
            return WorkerProcess(env, log_path)
        variant = self

        class VariantWorker(WorkerProcess):
            def command(self) -> list[str]:
                return [sys.executable, "-c", VARIANT, json.dumps([variant.scheme, variant.overrides])]

        return VariantWorker(env, log_path)

    def describe(self) -> str:
        parts = [f"{self.scheme}://"] + [f"{k}={v}" for k, v in {**self.overrides, **self.env}.items()]
        shipped = self.scheme == "mmkafka" and not self.overrides and not self.env
        return " ".join(parts) + (" (as shipped)" if shipped else "")


def measure_worker(bootstrap: str, topic: str, baselines_topic: str, n: int, partitions: int,
                   workdir: Path, timeout: float, variant: Variant | None = None) -> WorkerRun:
    """A fresh app id and data dir; a warm-up run loads the baseline first, so that every
    record of the measured run is binned (a fresh app would race the baseline otherwise)."""
    run = f"w{uuid.uuid4().hex[:8]}"
    env = service_env(bootstrap, workdir / run, app_id=f"bench-{run}", topic_prefix=f"{run}.",
                      web_port=free_port(), extra={
                          "MODEL_MONITORING_PARTITIONS": str(partitions),
                          "MODEL_MONITORING_BASELINES_TOPIC": baselines_topic,
                          "MODEL_MONITORING_LOG_LEVEL": "warning",
                          "MODEL_MONITORING_CRON_ENABLED": "false"})
    make = (variant or Variant()).worker
    warmup = make(env, workdir / f"{run}-warmup.log").start()
    try:
        warmup.wait_ready(timeout=timeout)
        poll(warmup, lambda: warmup.metric("model_monitoring_records_consumed_total",
                                           topic=baselines_topic) >= 1, timeout)
    finally:
        warmup.stop()
    worker = make({**env, "MODEL_MONITORING_FEATURES_TOPIC": topic}, workdir / f"{run}.log").start()
    assert worker.process is not None
    pid = worker.process.pid
    try:
        ready_s = worker.wait_ready(timeout=timeout)
        t_ready, (_, cpu_ready) = time.monotonic(), proc_status(pid)
        samples: list[tuple[float, float]] = []  # (time, records consumed) from the first > 0

        def all_consumed() -> bool:
            seen = worker.metric("model_monitoring_records_consumed_total", topic=topic)
            if seen > 0:
                samples.append((time.monotonic(), seen))
            return seen >= n

        poll(worker, all_consumed, timeout)
        peak, cpu = proc_status(pid)
        cpu -= cpu_ready
        (t0, c0), (t1, _) = samples[0], samples[-1]
        first_to_last = (n - c0) / (t1 - t0) if t1 > t0 else float("nan")
        binned = settled_binned(bootstrap, f"bench-{run}-partials-changelog", n)
        return WorkerRun(n / (t1 - t_ready), first_to_last, ready_s, cpu, peak, binned)
    finally:
        worker.stop()


def poll(worker: WorkerProcess, done: Callable[[], bool], timeout: float, every: float = 0.1) -> None:
    """Call `done` every 0.1 s until it is true; TimeoutError (with the log tail) after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if worker.process is None or worker.process.poll() is not None:
            raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
        try:
            if done():
                return
        except OSError:  # one /metrics poll missed its 2 s deadline: the worker is busy
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker: not done after {timeout:.0f}s\n{worker.log_tail()}")
        time.sleep(every)


def settled_binned(bootstrap: str, changelog: str, n: int, timeout: float = 30.0) -> int:
    """`binned_records` once the worker's last changelog writes have landed (or stopped coming)."""
    deadline, last = time.monotonic() + timeout, -1
    while True:
        binned = asyncio.run(binned_records(bootstrap, changelog))
        if binned >= n or binned == last or time.monotonic() > deadline:
            return binned
        last = binned
        time.sleep(1.0)


async def binned_records(bootstrap: str, changelog: str) -> int:
    """Records the worker counted with the baseline's bins: each partial's final histogram n."""
    state = await latest_values(bootstrap, changelog)
    total = 0
    for key, value in state.items():
        if is_partial_key(key):
            h = PartialState.from_bytes(value).histogram
            total += h.n if h.fingerprint else 0
    return total


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--transport", choices=("mmkafka", "kafka"), default="mmkafka",
                    help="the worker's transport: the project's (default) or faust's own, to compare")
    ap.add_argument("--faust-setting", action="append", default=[], metavar="NAME=VALUE",
                    help="override a faust setting of the worker (JSON, or module:attr), to compare")
    ap.add_argument("--only", choices=("single", "envelope"), help="measure one shape only")
    ap.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="a service setting of the worker, e.g. MODEL_MONITORING_BATCH_SIZE=20")
    ap.add_argument("--timeout", type=float, default=0.0, help="seconds per phase (default: from N)")
    args = ap.parse_args(argv)
    n, parts = args.records, args.partitions
    timeout = args.timeout or max(120.0, n / 500)
    variant = Variant(args.transport, dict(o.split("=", 1) for o in args.faust_setting),
                      dict(o.split("=", 1) for o in args.worker_env))
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    broker = EmbeddedBroker(port=free_port(), log_path=workdir / "broker.log").start()
    try:
        run = f"b{uuid.uuid4().hex[:6]}"
        single, envelopes = f"{run}.features", f"{run}.features-envelopes"
        baselines, changelog = f"{run}.baselines", f"{run}.plain-changelog"
        asyncio.run(create_topics(broker.bootstrap, [single, envelopes, changelog], parts))
        asyncio.run(create_topics(broker.bootstrap, [baselines], 1))
        baseline = bench_baseline()
        asyncio.run(produce(broker.bootstrap, [(baselines, baseline.key().encode(),
                                                orjson.dumps(baseline.to_dict()))]))
        t0 = time.perf_counter()
        size, mean = asyncio.run(asyncio.wait_for(
            preproduce(broker.bootstrap, n, single, envelopes), timeout))
        print(f"pre-produced {n:,} records ({mean:.0f} bytes each, {size / 1e6:.0f} MB) as single "
              f"messages and as envelopes of {ENVELOPE}, {parts} partitions, in "
              f"{time.perf_counter() - t0:.1f}s; worker: {variant.describe()}", flush=True)
        results: dict[str, tuple[Plain, WorkerRun]] = {}
        for label, topic in (("single", single), ("envelope", envelopes)):
            if args.only and label != args.only:
                continue
            plain = Plain(*asyncio.run(plain_consume(broker.bootstrap, topic, changelog, n, baseline, timeout)))
            print(f"{label}: plain consumer {plain.rps:,.0f} records/s", flush=True)
            worker = measure_worker(broker.bootstrap, topic, baselines, n, parts, workdir, timeout,
                                    variant)
            print(f"{label}: worker {worker.rps:,.0f} records/s", flush=True)
            results[label] = (plain, worker)
        print_table(n, results)
        summary: dict[str, float | None] = {}
        for label, prefix in (("single", ""), ("envelope", "envelope_")):
            p, w = results.get(label, (None, None))
            summary[f"{prefix}plain_rps"] = round(p.rps) if p else None
            summary[f"{prefix}worker_rps"] = round(w.rps) if w else None
            summary[f"{prefix}ratio"] = round(w.rps / p.rps, 3) if p and w else None
        summary["peak_rss_mb"] = round(max(w.peak_rss_mb for _, w in results.values()), 1)
        print(json.dumps(summary), flush=True)
        return 0
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def print_table(n: int, results: dict[str, tuple[Plain, WorkerRun]]) -> None:
    rows = [("", "plain rec/s", "worker rec/s", "ratio", "first-to-last", "ready s",
             "CPU µs/rec plain", "worker", "CPU ratio", "peak RSS MB", "binned")]
    for label, (p, w) in results.items():
        plain_us, worker_us = p.cpu_s / n * 1e6, w.cpu_s / n * 1e6
        rows.append((label, f"{p.rps:,.0f}", f"{w.rps:,.0f}", f"{w.rps / p.rps:.3f}",
                     f"{w.rps_first_to_last:,.0f}", f"{w.ready_s:.1f}", f"{plain_us:.0f}",
                     f"{worker_us:.0f}", f"{plain_us / worker_us:.3f}", f"{w.peak_rss_mb:.0f}",
                     f"{w.binned:,}/{n:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)))
    print("plain: first record received to N committed. worker: N / (the /metrics poll that saw "
          "all N consumed - /readyz first 200); first-to-last: from the first poll that saw "
          "records (NaN: all in one lump). CPU: the consumer's process (worker: all its threads, "
          "from ready) per record — steadier than rates on a shared machine.")


if __name__ == "__main__":
    sys.exit(main())
