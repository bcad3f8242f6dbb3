"""Weekly-run benchmark: time from trigger to `workflow.job.completed` against the real worker.

    .venv/bin/python bench/weekly_run.py [--sizes 100,1000,5000] [--features 25] [--partitions 8]
                                         [--events-per-key 10] [--heavy-keys 1000] [--heavy-factor 10]

The embedded broker (Tansu, memory only) on a free 127.0.0.1 port: a fresh one per measurement by
default, because it keeps every changelog write and never compacts — it grows by ~5 GB during the
5,000-key run, almost all of it the job tracker's changelog (`--broker shared` keeps one for the
whole run). For each measurement a fresh service (app id, topic prefix, data dir) and one worker
process:

1. one baseline per model (10 models) from a small deterministic reference sample of the same
   shape (20 numeric + 5 categorical features by default), published to the baselines topic and
   waited for (`model_monitoring_records_consumed_total{topic=<baselines>}`);
2. K (tenant, model) keys = K/10 tenants x 10 models, `--events-per-key` inference records each,
   timestamps spread over the 7 days before END (a midnight), produced in envelopes of 100;
   waited for until the group's lag on the features topic is 0;
3. a trigger `{"job": "model-monitoring", "jobRunId": ..., "metadata": {"windowEnd": END}}`;
   the wall clock runs from producing it to reading the completion (a consumer on the completed
   and failed topics is positioned before the trigger is sent), and the completion's
   `durationMs` is what the service reports.

Besides the sizes, one size (`--heavy-keys`, 1,000) is measured again with `--heavy-factor` (10)
times the events per key: the run should grow with keys, not with the events behind them.
`partials` in the table is the number of state cells in the window ((partition, tenant, model,
version, segment, day) keys, computed from where the producer put each envelope): what the
snapshot merges. The phase columns come from the worker's JSON log: trigger accepted -> first
key evaluated (fan-out + per-partition snapshot), first -> last key evaluated, last key
evaluated -> completion published (the job tracker; the last two overlap, as the tracker's work
interleaves with the evaluator's in the one event loop). `eval s` sums the evaluator's own
"evaluated ... in Xs" timings; `cpu s` is the worker's CPU time during the run; `checked` the
completion's `driftChecked` (keys x features when every key was evaluated); `broker MB` the
broker's RSS at the end of the measurement.

Progress goes to stderr; stdout holds the table and, as its last line, one JSON object
{"keys", "seconds", "events_behind", "duration_ms", ...} with one entry per measurement, in
order (null where a measurement did not complete). Every phase has a timeout; everything
started is stopped in `finally` blocks, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from model_monitoring.commands.broker import EmbeddedBroker, free_port
from model_monitoring.commands.harness import WorkerProcess, group_lag, produce, service_env
from model_monitoring.schemas.validation import format_timestamp
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import Settings, load_settings
from model_monitoring.tables.baseline import build_baseline

DAY_MS = 86_400_000
END_MS = 1_795_305_600_000          # 2026-11-22T00:00:00Z, a midnight: the window is the 7 days before
WINDOW_DAYS = 7
MODELS = 10
VERSION = "1"
ENVELOPE = 100
CATEGORIES = tuple(f"cat-value-{i}" for i in range(8))
REFERENCE_RECORDS = 2000


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the data
def feature_names(n_features: int) -> tuple[list[str], list[str]]:
    """80% numeric, 20% categorical (25 -> 20 + 5)."""
    n_cat = max(1, n_features // 5) if n_features > 1 else 0
    n_num = n_features - n_cat
    return [f"num_{j:02d}" for j in range(n_num)], [f"cat_{j:02d}" for j in range(n_cat)]


def feature_rows(rng: np.random.Generator, m: int, n_features: int) -> list[dict[str, Any]]:
    """m feature dicts: lognormal numerics (2% missing), uniform categories."""
    num_names, cat_names = feature_names(n_features)
    numeric = np.round(rng.lognormal(3.0, 1.0, size=(m, len(num_names))) * (1 + np.arange(len(num_names))), 3)
    missing = rng.random((m, len(num_names))) < 0.02
    cats = rng.integers(0, len(CATEGORIES), size=(m, len(cat_names)))
    num_rows, miss_rows, cat_rows = numeric.tolist(), missing.tolist(), cats.tolist()
    out = []
    for i in range(m):
        features: dict[str, Any] = {
            name: (None if miss else value)
            for name, value, miss in zip(num_names, num_rows[i], miss_rows[i], strict=False)}
        for name, c in zip(cat_names, cat_rows[i], strict=False):
            features[name] = CATEGORIES[c]
        out.append(features)
    return out


def key_of(k: int) -> tuple[str, str]:
    """Key k -> (tenant, model): 10 models per tenant."""
    return f"tenant-{k // MODELS:05d}", f"model-{k % MODELS:02d}"


def records(keys: int, events_per_key: int, n_features: int, seed: int) -> Iterator[dict[str, Any]]:
    """Event e of every key, then event e+1 ...: an envelope of 100 holds 100 keys, so each key's
    events spread over the partitions; timestamps uniform over the 7 days before END."""
    rng = np.random.default_rng(seed)
    total = keys * events_per_key
    chunk = 20_000
    window = WINDOW_DAYS * DAY_MS
    for base in range(0, total, chunk):
        m = min(chunk, total - base)
        rows = feature_rows(rng, m, n_features)
        offsets = rng.integers(0, window, size=m).tolist()
        scores = np.round(rng.random(m), 6).tolist()
        for i in range(m):
            n = base + i
            e, k = divmod(n, keys)
            tenant, model = key_of(k)
            yield {"predictionId": f"p-{seed}-{k:05d}-{e:05d}", "tenantId": tenant, "modelId": model,
                   "modelVersion": VERSION, "timestamp": format_timestamp(END_MS - window + offsets[i]),
                   "prediction": scores[i], "features": rows[i]}


def reference_sample(model: str, n_features: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1000 + int(model.rsplit("-", 1)[1]))
    rows = feature_rows(rng, REFERENCE_RECORDS, n_features)
    scores = np.round(rng.random(REFERENCE_RECORDS), 6).tolist()
    return [{"predictionId": f"ref-{model}-{i}", "tenantId": "reference", "modelId": model,
             "modelVersion": VERSION, "timestamp": format_timestamp(END_MS - 30 * DAY_MS),
             "prediction": scores[i], "features": rows[i]} for i in range(REFERENCE_RECORDS)]


def baseline_messages(topic: str, n_features: int, models: int) -> list[tuple[str, bytes, bytes]]:
    out = []
    for j in range(models):
        model = f"model-{j:02d}"
        b = build_baseline(reference_sample(model, n_features), model_id=model, model_version=VERSION,
                           tenant_id=None, task="classification")
        out.append((topic, b.key().encode(), orjson.dumps(b.to_dict())))
    return out


@dataclass
class Produced:
    messages: list[tuple[str, bytes, bytes]]
    records: int
    cells: int            # distinct (partition, tenant, model, day) in the window


def envelopes(topic: str, keys: int, events_per_key: int, n_features: int, partitions: int,
              seed: int) -> Produced:
    """Envelopes of 100 records keyed by their first predictionId, and the state cells they make
    (the partition is the one the producer's default partitioner picks for that key)."""
    partitioner = DefaultPartitioner()
    all_parts = list(range(partitions))
    cells: set[tuple[int, str, str, int]] = set()
    out: list[tuple[str, bytes, bytes]] = []
    batch: list[dict[str, Any]] = []
    n = 0

    def flush() -> None:
        key = batch[0]["predictionId"].encode()
        p = partitioner(key, all_parts, all_parts)
        for r in batch:
            ts = datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")).timestamp() * 1000
            cells.add((p, r["tenantId"], r["modelId"], int(ts) // DAY_MS))
        out.append((topic, key, orjson.dumps({"records": batch})))

    for rec in records(keys, events_per_key, n_features, seed):
        batch.append(rec)
        n += 1
        if len(batch) == ENVELOPE:
            flush()
            batch = []
    if batch:
        flush()
    return Produced(out, n, len(cells))


# ------------------------------------------------------------------ processes
def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_until(what: str, predicate: Any, timeout: float, every: float = 0.5) -> None:
    """Poll; a poll that fails (the worker's HTTP port busy while it ingests) counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except OSError:  # urllib's socket timeout, connection refused, ...
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f}s")
        time.sleep(every)


def py_spy_dump(pid: int) -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        return "(py-spy not installed: .venv/bin/pip install py-spy)"
    try:
        return subprocess.run([exe, "dump", "--pid", str(pid)], capture_output=True, text=True,
                              timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"(py-spy failed: {exc})"


# ------------------------------------------------------------------ the trigger and its completion
async def trigger_and_wait(s: Settings, job_run_id: str, timeout: float) -> tuple[float, dict[str, Any] | None, str]:
    """Produce the trigger, read the completed/failed topics until this run's message arrives.
    Returns (wall seconds, message, "completed" | "failed" | "timeout")."""
    bootstrap = s.kafka_bootstrap_servers
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50,
                                fetch_max_bytes=16 << 20, max_partition_fetch_bytes=16 << 20)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        tps = []
        for topic in (s.completed_topic, s.failed_topic):
            parts = consumer.partitions_for_topic(topic)
            for _ in range(50):
                if parts:
                    break
                await consumer._client.force_metadata_update()  # noqa: SLF001
                parts = consumer.partitions_for_topic(topic)
                await asyncio.sleep(0.1)
            tps += [TopicPartition(topic, p) for p in sorted(parts or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        await consumer.getmany(timeout_ms=100)  # connections and positions settled before the clock starts
        doc = {"job": "model-monitoring", "jobRunId": job_run_id,
               "metadata": {"windowEnd": format_timestamp(END_MS)}}
        started = time.monotonic()
        await producer.send_and_wait(s.trigger_topic, orjson.dumps(doc), key=job_run_id.encode())
        while time.monotonic() - started < timeout:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, msgs in batches.items():
                for msg in msgs:
                    value = orjson.loads(msg.value)
                    if value.get("jobRunId") == job_run_id:
                        kind = "completed" if tp.topic == s.completed_topic else "failed"
                        return time.monotonic() - started, value, kind
        return time.monotonic() - started, None, "timeout"
    finally:
        await producer.stop()
        await consumer.stop()


# ------------------------------------------------------------------ the worker's log
def log_phases(worker: WorkerProcess, job_run_id: str) -> dict[str, Any]:
    """Phase boundaries of the run (seconds) from the worker's JSON log lines."""
    def ts(line: dict[str, Any]) -> float:
        return datetime.fromisoformat(line["ts"]).timestamp()

    accepted = completed = None
    evaluated: list[float] = []
    eval_sum = 0.0
    marker = f" for run {job_run_id} in "
    for line in worker.json_lines():
        msg = str(line.get("message", ""))
        if msg.startswith("trigger accepted") and f"jobRunId={job_run_id} " in msg:
            accepted = ts(line)
        elif msg.startswith("evaluated ") and marker in msg:
            evaluated.append(ts(line))
            with contextlib.suppress(ValueError):
                eval_sum += float(msg.split(marker, 1)[1].split("s:", 1)[0])
        elif msg in ("model-monitoring completed", "model-monitoring failed") and line.get("jobRunId") == job_run_id:
            completed = ts(line)
    out: dict[str, Any] = {"keys_evaluated": len(evaluated), "eval_sum_s": eval_sum}
    if accepted is not None and evaluated:
        out["to_first_eval_s"] = min(evaluated) - accepted
        out["eval_span_s"] = max(evaluated) - min(evaluated)
    if completed is not None and evaluated:
        out["last_eval_to_done_s"] = completed - max(evaluated)
    return out


# ------------------------------------------------------------------ one measurement
@dataclass
class Measurement:
    keys: int
    events_per_key: int
    events_behind: int = 0
    partials: int = 0
    status: str = "not run"
    seconds: float | None = None
    duration_ms: int | None = None
    ingest_s: float = 0.0
    ready_s: float = 0.0
    cpu_s: float = 0.0
    worker_rss_mb: float = 0.0
    broker_rss_mb: float = 0.0
    phases: dict[str, Any] = field(default_factory=dict)
    completion: dict[str, Any] | None = None

    @property
    def keys_per_s(self) -> float | None:
        return self.keys / self.seconds if self.seconds else None


def measure(broker: EmbeddedBroker, workdir: Path, result: Measurement, args: argparse.Namespace) -> None:
    keys, events_per_key = result.keys, result.events_per_key
    name = f"wr{keys}x{events_per_key}-{uuid.uuid4().hex[:6]}"
    env = service_env(broker.bootstrap, workdir / name, app_id=name, topic_prefix=f"{name}.", extra={
        "MODEL_MONITORING_PARTITIONS": str(args.partitions),
        "MODEL_MONITORING_CRON_ENABLED": "false",
        "MODEL_MONITORING_LOG_LEVEL": "info",
        "MODEL_MONITORING_RUN_DEADLINE_SECONDS": str(int(args.run_timeout + 60)),
    })
    s = load_settings(env)
    asyncio.run(ensure_topics(s))
    models = min(MODELS, keys)

    progress(f"{name}: generating {keys} keys x {events_per_key} events ({args.features} features)")
    produced = envelopes(s.features_topic, keys, events_per_key, args.features, args.partitions,
                         seed=keys * 1000 + events_per_key)
    result.events_behind, result.partials = produced.records, produced.cells
    baselines = baseline_messages(s.baselines_topic, args.features, models)

    worker = WorkerProcess(env, workdir / f"{name}.log").start()
    assert worker.process is not None
    pid = worker.process.pid
    try:
        result.ready_s = worker.wait_ready(timeout=args.phase_timeout)
        progress(f"{name}: worker {pid} ready in {result.ready_s:.1f}s; publishing {len(baselines)} baselines")
        asyncio.run(produce(broker.bootstrap, baselines))
        wait_until("baselines consumed", lambda: worker.metric(
            "model_monitoring_records_consumed_total", topic=s.baselines_topic) >= len(baselines),
            args.phase_timeout, 0.3)
        # the baseline cache is filled by the same agent that counts them: give it a beat
        time.sleep(1.0)

        progress(f"{name}: producing {produced.records} records in {len(produced.messages)} envelopes")
        t0 = time.monotonic()
        asyncio.run(produce(broker.bootstrap, produced.messages))
        produced.messages.clear()
        ingest_timeout = args.phase_timeout + produced.records / 2000
        wait_until("records consumed", lambda: worker.metric(
            "model_monitoring_records_consumed_total", topic=s.features_topic) >= produced.records,
            ingest_timeout, 0.5)
        wait_until("features lag 0", lambda: asyncio.run(group_lag(
            broker.bootstrap, s.app_id, [s.features_topic])) == 0, args.phase_timeout, 1.0)
        result.ingest_s = time.monotonic() - t0
        progress(f"{name}: ingested in {result.ingest_s:.1f}s ({produced.records / result.ingest_s:,.0f} records/s);"
                 f" {produced.cells} partials in the window; triggering")

        job_run_id = f"bench-{keys}" + (f"-x{events_per_key}" if events_per_key != args.events_per_key else "")
        cpu0 = proc_cpu_s(pid)
        seconds, doc, kind = asyncio.run(trigger_and_wait(s, job_run_id, args.run_timeout))
        result.cpu_s = proc_cpu_s(pid) - cpu0
        result.worker_rss_mb = proc_rss_mb(pid)
        result.status = kind
        if kind == "timeout":
            progress(f"{name}: no completion after {seconds:.0f}s; where the worker is:")
            print(py_spy_dump(pid), file=sys.stderr, flush=True)
        else:
            result.seconds = seconds
            result.completion = doc
            result.duration_ms = int(doc["durationMs"]) if doc and "durationMs" in doc else None
        time.sleep(0.5)  # the completion's log line
        result.phases = log_phases(worker, job_run_id)
        progress(f"{name}: {kind} in {seconds:.2f}s (durationMs {result.duration_ms}); "
                 f"{result.phases}; completion {json.dumps(doc)[:300] if doc else None}")
    finally:
        worker.stop()
        if broker.process is not None:
            result.broker_rss_mb = proc_rss_mb(broker.process.pid)
        if not args.keep:
            shutil.rmtree(workdir / name, ignore_errors=True)


# ------------------------------------------------------------------ output
def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[Measurement]) -> str:
    head = (f"{'keys':>6} {'ev/key':>6} {'events behind':>13} {'partials':>8} {'status':>9} "
            f"{'seconds':>8} {'durationMs':>10} {'keys/s':>8} | {'->1st eval':>10} {'eval span':>9} "
            f"{'->done':>7} {'eval s':>7} {'cpu s':>6} {'checked':>8} {'ingest s':>8} {'broker MB':>9}")
    lines = [head, "-" * len(head)]
    for r in results:
        p = r.phases
        lines.append(
            f"{r.keys:>6} {r.events_per_key:>6} {r.events_behind:>13,} {r.partials:>8,} {r.status:>9} "
            f"{fmt(r.seconds, '.2f'):>8} {fmt(r.duration_ms, 'd'):>10} {fmt(r.keys_per_s, '.0f'):>8} | "
            f"{fmt(p.get('to_first_eval_s'), '.2f'):>10} {fmt(p.get('eval_span_s'), '.2f'):>9} "
            f"{fmt(p.get('last_eval_to_done_s'), '.2f'):>7} {fmt(p.get('eval_sum_s'), '.2f'):>7} "
            f"{r.cpu_s:>6.1f} {fmt((r.completion or {}).get('driftChecked'), 'd'):>8} {r.ingest_s:>8.1f} "
            f"{r.broker_rss_mb:>9.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000,5000", help="comma-separated numbers of (tenant, model) keys")
    ap.add_argument("--features", type=int, default=25, help="features per record (80%% numeric, 20%% categorical)")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--events-per-key", type=int, default=10)
    ap.add_argument("--heavy-keys", type=int, default=1000, help="the size measured again with more events (0: none)")
    ap.add_argument("--heavy-factor", type=int, default=10, help="events per key multiplier of that measurement")
    ap.add_argument("--phase-timeout", type=float, default=180.0, help="seconds per set-up phase")
    ap.add_argument("--run-timeout", type=float, default=600.0, help="seconds from trigger to completion")
    ap.add_argument("--broker", choices=("per-measurement", "shared"), default="per-measurement",
                    help="the memory-only broker keeps every changelog write (GBs at 5,000 keys): "
                         "a fresh one per measurement keeps them independent")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep data dirs (logs are always kept in the workdir)")
    args = ap.parse_args(argv)

    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    plan = [(k, args.events_per_key) for k in sizes]
    if args.heavy_keys:
        plan.append((args.heavy_keys, args.events_per_key * args.heavy_factor))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="weekly-run-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    progress(f"workdir {workdir} (worker and broker logs)")

    results: list[Measurement] = []
    broker: EmbeddedBroker | None = None
    try:
        for index, (keys, epk) in enumerate(plan):
            if broker is None or args.broker == "per-measurement":
                if broker is not None:
                    broker.stop()
                broker = EmbeddedBroker(port=free_port(), log_path=workdir / f"broker-{index}.log").start()
                progress(f"broker pid {broker.process.pid if broker.process else '?'} on {broker.bootstrap}")
            result = Measurement(keys, epk)
            results.append(result)
            try:
                measure(broker, workdir, result, args)
            except Exception as exc:  # noqa: BLE001 - report it and go on with the next size
                progress(f"{keys} keys x {epk}: {type(exc).__name__}: {exc}")
                result.status = "error"
    finally:
        if broker is not None:
            broker.stop()

    print(f"weekly run on the embedded broker: {args.features} features, {args.partitions} partitions, "
          f"{MODELS} models per tenant, window {WINDOW_DAYS} days before {format_timestamp(END_MS)}, "
          f"{'a fresh broker per measurement' if args.broker == 'per-measurement' else 'one broker for all measurements'}")
    print(table(results))
    print(json.dumps({
        "keys": [r.keys for r in results],
        "seconds": [round(r.seconds, 3) if r.seconds is not None else None for r in results],
        "events_behind": [r.events_behind for r in results],
        "duration_ms": [r.duration_ms for r in results],
        "events_per_key": [r.events_per_key for r in results],
        "partials": [r.partials for r in results],
        "status": [r.status for r in results],
    }))
    return 0 if all(r.status == "completed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
