"""The service under test in a scenario: a fresh app id and topic prefix on the one broker, its
workers, its inputs, its partials changelog as a table, and the published outputs of a run."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from bench.scenarios.common import END_MS, ScenarioFailed, run_async, wait_until
from model_monitoring.commands.broker import Broker, free_port
from model_monitoring.commands.harness import (
    WorkerProcess,
    consumed,
    group_lag,
    ingest_topics,
    produce,
    service_env,
    topic_partitions,
)
from model_monitoring.commands.simulate import Message
from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.highwater import true_end_offsets
from model_monitoring.streams.settings import Settings, load_settings
from model_monitoring.tables.incidents import IncidentBook
from tests.support.baselines import baseline_message
from tests.support.oracle import Fold, stream_state


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
        tps = await topic_partitions(consumer, topics)
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


class Service:
    """One deployment of the service under test: its own app id, topics and workers."""

    def __init__(self, broker: Broker, workdir: Path, name: str, *, partitions: int = 4,
                 extra: Mapping[str, str] | None = None) -> None:
        self.broker = broker
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.app_id = f"{name}-{uuid.uuid4().hex[:6]}"
        self.env = service_env(broker, workdir / "data-0", app_id=self.app_id,
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
        # the oracle's incidents per tenant:model, carried from run to run as the service's are
        self.expected_incidents: dict[str, IncidentBook] = {}

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
        return run_async(group_lag(self.broker.bootstrap, self.app_id, ingest_topics(self.s)))

    def consumed(self) -> bool:
        """The group has committed every input message, forwards through the repartition topics
        included (the harness's two-read rule: a single read can take a repartition topic's end
        before a commit that forwarded to it, and see lag 0 with records still to fold)."""
        return run_async(consumed(self.broker.bootstrap, self.app_id, ingest_topics(self.s)))

    def wait_consumed(self, timeout: float) -> bool:
        """Every input message committed by the group (no partition left behind)."""
        return wait_until(self.consumed, timeout, 0.3)

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
        """Every drift, degraded, snapshot, resolved, recovered, completed and failed message (of
        one run, or all)."""
        topics = {"drift": self.s.drift_topic, "degraded": self.s.degraded_topic,
                  "snapshot": self.s.snapshot_topic, "resolved": self.s.drift_resolved_topic,
                  "recovered": self.s.performance_recovered_topic, "completed": self.s.completed_topic,
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
