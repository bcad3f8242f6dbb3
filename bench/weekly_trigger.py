"""One weekly run as the benchmark sees it: the trigger produced and the wall clock until its
completion is read, and the run's phases from the worker's JSON log."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.weekly_data import END_MS
from model_monitoring.commands.harness import WorkerProcess
from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.streams.settings import Settings


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
