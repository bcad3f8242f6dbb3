"""(a) of the ingest benchmark: the practical limit without faust, a plain aiokafka consumer
doing the worker's work (getmany, the worker's parsing: msgspec's typed decoding and the full way
for what it does not take, the project's binning, one changelog message per (partition, tenant,
model, version, segment, day) per batch, commit)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.ingest_records import DAY_MS
from model_monitoring.agents.ingest import parse_messages
from model_monitoring.schemas.fast_decode import FastDecoder
from model_monitoring.schemas.models import InferenceRecord
from model_monitoring.schemas.validation import Validators
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.histogram import count_batch

BATCH = 2000          # records per plain batch, as the worker's default MODEL_MONITORING_BATCH_SIZE
FETCH_BYTES = 16 << 20
MAX_MESSAGE_BYTES = 4 << 20  # the worker's default MODEL_MONITORING_MAX_MESSAGE_BYTES


async def plain_consume(bootstrap: str, topic: str, changelog: str, n: int, baseline: Baseline,
                        timeout: float) -> tuple[float, float]:
    """(records/s, CPU seconds) of the same work without faust, first record received to N
    committed; CPU is this process's, so the plain consumer's."""
    validators = Validators()
    fast = FastDecoder("features", validators.max_features, MAX_MESSAGE_BYTES)
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
                # the worker's own parsing: the msgspec fast path, the full way for the rest
                parsed = parse_messages(messages, "features", validators, MAX_MESSAGE_BYTES, InferenceRecord.from_dict, fast)
                for _, _, rec in parsed.records:
                    groups[(tp.partition, rec.tenant_id, rec.model_id, rec.model_version,
                            rec.segment or "", rec.timestamp_ms // DAY_MS)].append(rec.features)
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
