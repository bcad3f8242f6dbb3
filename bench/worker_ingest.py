"""(b) of the ingest benchmark: the worker process ingesting the pre-produced records into its
tables, as shipped or as a variant (another transport or faust settings) to measure a change."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.processes import machine_busy_s, proc_status
from model_monitoring.commands.broker import Broker, free_port
from model_monitoring.commands.harness import WorkerProcess, latest_values, service_env
from model_monitoring.tables.keys import is_partial_key
from model_monitoring.tables.partial import PartialState


@dataclass
class WorkerRun:
    rps: float            # N / (the poll that saw all N consumed - /readyz first answered 200)
    rps_first_to_last: float  # from the first poll that saw records consumed (NaN: one lump)
    ready_s: float
    cpu_s: float          # CPU seconds of the worker process from ready to all N consumed
    peak_rss_mb: float
    binned: int           # records counted with the baseline's bins (from the partials changelog)
    cores_busy: float = float("nan")  # the machine's busy cores over the same span (all processes)
    in_place: float = float("nan")  # share of the mispartitioned records folded in place (all workers)


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


def measure_worker(broker: Broker | str, topic: str, baselines_topic: str, n: int, partitions: int,
                   workdir: Path, timeout: float, variant: Variant | None = None,
                   workers: int = 1) -> WorkerRun:
    """A fresh app id and data dir; a warm-up run loads the baseline first, so that every
    record of the measured run is binned (a fresh app would race the baseline otherwise). Given
    the broker itself (not its address), the worker runs with that broker's profile.

    With `workers` > 1, that many worker processes in one consumer group (each its own data dir
    and web port, the first recovering the warm-up's tables from disk, the others from the
    changelogs), all started and ready before the clock runs: records/s counts all of them, CPU
    sums their processes, peak RSS is the largest one's. The group's rebalance as they join is
    part of what is measured: a deployment scaled out pays it too."""
    run = f"w{uuid.uuid4().hex[:8]}"
    bootstrap = broker if isinstance(broker, str) else broker.bootstrap

    def env_of(i: int) -> dict[str, str]:
        return service_env(broker, workdir / (run if i == 0 else f"{run}-{i}"), app_id=f"bench-{run}",
                           topic_prefix=f"{run}.", web_port=free_port(), extra={
                               "MODEL_MONITORING_PARTITIONS": str(partitions),
                               "MODEL_MONITORING_BASELINES_TOPIC": baselines_topic,
                               "MODEL_MONITORING_LOG_LEVEL": "warning",
                               "MODEL_MONITORING_CRON_ENABLED": "false"})

    make = (variant or Variant()).worker
    warmup = make(env_of(0), workdir / f"{run}-warmup.log").start()
    try:
        warmup.wait_ready(timeout=timeout)
        poll(warmup, lambda: warmup.metric("model_monitoring_records_consumed_total",
                                           topic=baselines_topic) >= 1, timeout)
    finally:
        warmup.stop()
    started = []
    try:
        for i in range(workers):
            started.append(make({**env_of(i), "MODEL_MONITORING_FEATURES_TOPIC": topic},
                                workdir / f"{run}-{i}.log").start())
        ready_s = max(w.wait_ready(timeout=timeout) for w in started)
        pids = [w.process.pid for w in started if w.process is not None]
        t_ready, cpu_ready = time.monotonic(), sum(proc_status(pid)[1] for pid in pids)
        busy_ready = machine_busy_s()
        samples: list[tuple[float, float]] = []  # (time, records consumed) from the first > 0

        def all_consumed() -> bool:
            seen = sum(w.metric("model_monitoring_records_consumed_total", topic=topic) for w in started)
            if seen > 0:
                samples.append((time.monotonic(), seen))
            return seen >= n

        poll(started, all_consumed, timeout)
        busy, t_end = machine_busy_s() - busy_ready, time.monotonic()
        status = [proc_status(pid) for pid in pids]
        in_place = in_place_share(started, topic)
        peak, cpu = max(st[0] for st in status), sum(st[1] for st in status) - cpu_ready
        (t0, c0), (t1, _) = samples[0], samples[-1]
        first_to_last = (n - c0) / (t1 - t0) if t1 > t0 else float("nan")
        binned = settled_binned(bootstrap, f"bench-{run}-partials-changelog", n)
        return WorkerRun(n / (t1 - t_ready), first_to_last, ready_s, cpu, peak, binned,
                         busy / max(t_end - t_ready, 1e-9), in_place)
    finally:
        for w in started:
            w.stop()


def in_place_share(workers: list[WorkerProcess], topic: str) -> float:
    """Of the records that arrived on another partition than their prediction's, the share the
    workers folded in place (NaN when none did arrive so, or a /metrics read failed)."""
    try:
        moved = sum(w.metric("model_monitoring_mispartitioned_records_total", topic=topic) for w in workers)
        here = sum(w.metric("model_monitoring_folded_in_place_records_total", topic=topic) for w in workers)
    except OSError:
        return float("nan")
    return here / moved if moved else float("nan")


def poll(worker: WorkerProcess | list[WorkerProcess], done: Callable[[], bool], timeout: float,
         every: float = 0.1) -> None:
    """Call `done` every 0.1 s until it is true; TimeoutError (with the log tail) after `timeout`."""
    deadline = time.monotonic() + timeout
    workers = worker if isinstance(worker, list) else [worker]
    while True:
        for w in workers:
            if w.process is None or w.process.poll() is not None:
                raise RuntimeError(f"worker exited:\n{w.log_tail()}")
        try:
            if done():
                return
        except OSError:  # one /metrics poll missed its 2 s deadline: the worker is busy
            pass
        if time.monotonic() > deadline:
            tails = "\n".join(w.log_tail() for w in workers)
            raise TimeoutError(f"worker: not done after {timeout:.0f}s\n{tails}")
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
