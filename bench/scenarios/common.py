"""What every reliability scenario shares: a service (fresh app id and topic prefix on the one
broker) with its workers, the input log and its offline fold, the published outputs of a run,
and the result row the script prints."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from model_monitoring.commands.broker import EmbeddedBroker, free_port
from model_monitoring.commands.harness import WorkerProcess, group_lag, produce, service_env
from model_monitoring.commands.simulate import Message
from model_monitoring.schemas.validation import format_timestamp
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.highwater import true_end_offsets
from model_monitoring.streams.settings import Settings, load_settings
from tests.integration.oracle import Fold, baseline_message, dlq_positions, stream_state

END_MS = 1_795_046_400_000  # a midnight UTC: a run's window is the 7 whole days before it
OUTPUT_KINDS = ("drift", "degraded", "snapshot")


def progress(message: str) -> None:
    """Progress goes to stderr; stdout holds only the table and the JSON line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class ScenarioFailed(AssertionError):
    """A check of a scenario did not hold."""


@dataclass
class Result:
    """One row of the table."""

    name: str
    load: str = ""
    faults: str = ""
    messages_in: int = 0         # distinct input records (envelope records one by one)
    accounted: int = 0           # counted in the final state + dead-lettered (distinct positions)
    events_expected: int = 0     # drift + degraded + snapshot + completion, from the offline oracle
    events_published: int = 0    # distinct events published
    duplicates: int = 0          # copies of an event published more than once
    passed: bool = False
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def check(self, condition: bool, problem: str) -> bool:
        if not condition:
            self.problems.append(problem)
        return condition

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pass": self.passed, "load": self.load, "faults": self.faults,
                "messages_in": self.messages_in, "accounted": self.accounted,
                "events_expected": self.events_expected,
                "events_published": self.events_published, "duplicates": self.duplicates,
                "seconds": round(self.seconds, 1), "problems": self.problems[:10], **self.notes}


async def read_topics(bootstrap: str, topics: list[str], timeout: float = 20.0
                      ) -> dict[str, list[Any]]:
    """Every message of several topics from the beginning up to their (true) end offsets, with
    one consumer (harness.read_topic starts one per topic)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None,
                                fetch_max_bytes=16 << 20, max_partition_fetch_bytes=16 << 20)
    await consumer.start()
    out: dict[str, list[Any]] = {t: [] for t in topics}
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return out
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await true_end_offsets({"bootstrap_servers": bootstrap}, tps, await consumer.end_offsets(tps))
        pending = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            batch = await consumer.getmany(*pending, timeout_ms=200, max_records=20_000)
            for tp, records in batch.items():
                out[tp.topic].extend(records)
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        return out
    finally:
        await consumer.stop()


def run_async(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def wait_until(predicate: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


class Service:
    """One deployment of the service under test: its own app id, topics and workers."""

    def __init__(self, broker: EmbeddedBroker, workdir: Path, name: str, *, partitions: int = 4,
                 extra: Mapping[str, str] | None = None) -> None:
        self.broker = broker
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.app_id = f"{name}-{uuid.uuid4().hex[:6]}"
        self.env = service_env(broker.bootstrap, workdir / "data-0", app_id=self.app_id,
                               topic_prefix=f"{self.app_id}.", extra={
                                   "MODEL_MONITORING_PARTITIONS": str(partitions),
                                   "MODEL_MONITORING_CRON_ENABLED": "false",
                                   "MODEL_MONITORING_LOG_LEVEL": os.environ.get(
                                       "RELIABILITY_WORKER_LOG_LEVEL", "warning"),
                                   **(extra or {})})
        self.s: Settings = load_settings(self.env)
        run_async(ensure_topics(self.s))
        self.workers: dict[int, WorkerProcess] = {}
        self._starts = Counter[int]()

    # ------------------------------------------------------------------ workers
    def worker_env(self, index: int) -> dict[str, str]:
        """Worker 0 uses the service env; others get their own data dir and web port."""
        if index == 0:
            return self.env
        env = dict(self.env)
        env["MODEL_MONITORING_DATA_DIR"] = str(self.workdir / f"data-{index}")
        env["MODEL_MONITORING_WEB_PORT"] = str(free_port())
        return env

    def start_worker(self, index: int = 0, wait: bool = True) -> WorkerProcess:
        """Start (or restart, on the same data dir and port) worker `index`."""
        old = self.workers.get(index)
        env = old.env if old is not None else self.worker_env(index)
        self._starts[index] += 1
        worker = WorkerProcess(env, self.workdir / f"worker-{index}.{self._starts[index]}.log").start()
        self.workers[index] = worker
        if wait:
            worker.wait_ready(timeout=180)
        return worker

    @property
    def worker(self) -> WorkerProcess:
        return self.workers[0]

    def stop(self) -> None:
        for worker in self.workers.values():
            try:
                worker.stop(timeout=20)
            except Exception:  # noqa: BLE001 - stopping must reach every worker
                worker.kill()

    # ------------------------------------------------------------------ inputs
    def topic_of(self, kind: str) -> str:
        return {"features": self.s.features_topic, "outcomes": self.s.outcomes_topic,
                "trigger": self.s.trigger_topic, "baselines": self.s.baselines_topic}[kind]

    def publish_baselines(self, baselines: Mapping[Any, Any]) -> None:
        run_async(produce(self.broker.bootstrap, [(self.s.baselines_topic, *baseline_message(b))
                                                  for b in baselines.values()]))

    def wait_baselines(self, workers: WorkerProcess | list[WorkerProcess], n: int,
                       timeout: float = 60) -> None:
        """Until the workers together have stored `n` baselines (then a moment for the global
        table's changelog to reach every worker)."""
        group = workers if isinstance(workers, list) else [workers]
        ok = wait_until(lambda: sum(w.metric("model_monitoring_records_consumed_total",
                                             topic=self.s.baselines_topic) for w in group) >= n,
                        timeout, 0.3)
        if not ok:
            raise ScenarioFailed(f"baselines not loaded:\n{group[0].log_tail()}")
        if len(group) > 1:
            time.sleep(2.0)

    def produce(self, messages: Iterable[Message]) -> int:
        return run_async(produce(self.broker.bootstrap,
                                 [(self.topic_of(m.kind), m.key, m.value) for m in messages]))

    def input_lag(self) -> int:
        return run_async(group_lag(self.broker.bootstrap, self.app_id,
                                   [self.s.features_topic, self.s.outcomes_topic]))

    def wait_consumed(self, timeout: float) -> bool:
        """Every input message committed by the group (no partition left behind)."""
        return wait_until(lambda: self.input_lag() == 0, timeout, 0.3)

    def final_state(self, settle: float = 1.0, timeout: float = 120) -> Fold:
        """The partials changelog as a table, once two reads `settle` seconds apart agree."""
        topic = f"{self.app_id}-partials-changelog"

        def table() -> dict[bytes, bytes]:
            state: dict[bytes, bytes] = {}
            for rec in run_async(read_topics(self.broker.bootstrap, [topic]))[topic]:
                if rec.value is None:
                    state.pop(rec.key, None)
                else:
                    state[rec.key] = rec.value
            return state

        previous = table()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(settle)
            current = table()
            if current == previous and current:
                break
            previous = current
        return stream_state(previous)

    def dead_letters(self, *kinds: str) -> list[Any]:
        topics = [self.s.dlq_topic(self.topic_of(kind)) for kind in kinds]
        found = run_async(read_topics(self.broker.bootstrap, topics))
        return [rec for t in topics for rec in found[t]]

    # ------------------------------------------------------------------ runs
    def trigger(self, job_run_id: str, tenant_ids: list[str] | None = None,
                job: str = "model-monitoring", end_ms: int = END_MS) -> None:
        doc: dict[str, Any] = {"job": job, "jobRunId": job_run_id,
                               "metadata": {"windowEnd": format_timestamp(end_ms)}}
        if tenant_ids is not None:
            doc["metadata"]["tenantIds"] = tenant_ids
        run_async(produce(self.broker.bootstrap,
                          [(self.s.trigger_topic, job_run_id.encode(), orjson.dumps(doc))]))

    def read(self, topic: str) -> list[Any]:
        return run_async(read_topics(self.broker.bootstrap, [topic]))[topic]

    def outputs(self, job_run_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Every drift, degraded, snapshot, completed and failed message (of one run, or all)."""
        topics = {"drift": self.s.drift_topic, "degraded": self.s.degraded_topic,
                  "snapshot": self.s.snapshot_topic, "completed": self.s.completed_topic,
                  "failed": self.s.failed_topic}
        found = run_async(read_topics(self.broker.bootstrap, list(topics.values())))
        out = {}
        for kind, topic in topics.items():
            docs = [orjson.loads(r.value) for r in found[topic]]
            out[kind] = [d for d in docs if job_run_id is None or d.get("jobRunId") == job_run_id]
        return out

    def completions(self, job_run_id: str) -> list[dict[str, Any]]:
        docs = [orjson.loads(r.value) for r in self.read(self.s.completed_topic)]
        return [d for d in docs if d.get("jobRunId") == job_run_id]

    def wait_completed(self, job_run_id: str, timeout: float = 90) -> bool:
        def finished() -> bool:
            found = run_async(read_topics(self.broker.bootstrap,
                                          [self.s.completed_topic, self.s.failed_topic]))
            return any(orjson.loads(r.value).get("jobRunId") == job_run_id
                       for records in found.values() for r in records)
        return wait_until(finished, timeout, 0.3)


# ---------------------------------------------------------------------- checks
def compare_state(result: Result, actual: Fold, expected: Fold) -> bool:
    """The stream's partials, summed over partitions, equal the offline fold exactly."""
    missing = set(expected.states) - set(actual.states)
    extra = set(actual.states) - set(expected.states)
    a, e = actual.comparable(), expected.comparable()
    differ = sorted(k for k in set(a) & set(e) if a[k] != e[k])
    detail = [(k, actual.states[k].histogram.n, expected.states[k].histogram.n,
               actual.states[k].performance.n, expected.states[k].performance.n) for k in differ[:3]]
    ok = result.check(not missing and not extra and not differ,
                      f"state differs from the offline fold: {len(missing)} missing, "
                      f"{len(extra)} extra, {len(differ)} different keys; (key, n, expected, "
                      f"outcomes, expected): {detail}")
    return ok


def counted(fold: Fold) -> int:
    """Records a fold counts: predictions in histograms plus outcomes joined into error sums."""
    return sum(s.histogram.n + s.performance.n for s in fold.states.values())


def check_dead_letters(result: Result, dead: list[Any]) -> int:
    """Each dead letter names a distinct source position and a reason; none is an internal
    error (a defect of ours, not of the message). Returns the number of distinct positions."""
    positions = dlq_positions(dead)
    if len(positions) < len(dead):  # at-least-once: a batch redelivered after a crash
        result.notes["dlq_repeats"] = len(dead) - len(positions)
    reasons = Counter(dict(r.headers).get("error", b"?").decode() for r in dead)
    result.notes["dlq_reasons"] = dict(sorted(reasons.items()))
    result.check("internal_error" not in reasons, f"{reasons['internal_error']} internal errors")
    return len(positions)


def account(result: Result, actual: Fold, expected: Fold, dead: list[Any]) -> None:
    """messages in = the distinct records of the log; accounted = counted + dead-lettered."""
    result.messages_in = counted(expected) + expected.malformed
    result.accounted = counted(actual) + check_dead_letters(result, dead)
    result.check(result.accounted == result.messages_in,
                 f"accounted {result.accounted} != in {result.messages_in}")


def worker_unaffected(result: Result, worker: WorkerProcess, pid: int) -> None:
    """Zero crashes: the same process, still answering /readyz with 200."""
    alive = worker.process is not None and worker.process.poll() is None
    result.check(alive and worker.process.pid == pid, f"worker {pid} is gone:\n{worker.log_tail(5)}")
    if alive:
        try:
            status, _ = worker.get("/readyz", timeout=5)
        except OSError as exc:
            status = -1
            result.problems.append(f"/readyz unreachable: {exc}")
        result.check(status == 200, f"/readyz answered {status}")


def seconds_since(started: float) -> float:
    return time.monotonic() - started


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


@dataclass
class Context:
    """What a scenario gets: the broker, a work dir, the variant, its row, and the services it
    starts (the runner stops them, whatever happens)."""

    broker: EmbeddedBroker
    workdir: Path
    quick: bool
    result: Result
    seed: int = 20261126
    services: list[Service] = field(default_factory=list)

    def service(self, name: str, **kw: Any) -> Service:
        svc = Service(self.broker, self.workdir / f"svc{len(self.services)}", name, **kw)
        self.services.append(svc)
        return svc

    def cleanup(self) -> None:
        for svc in self.services:
            svc.stop()
