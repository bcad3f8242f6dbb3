"""The ingest benchmark's input: deterministic inference records of 25 features (~700 bytes of
JSON each), their baseline, and the two topics they are pre-produced to (single messages and
envelopes of 100)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from model_monitoring.commands.harness import produce
from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.baseline_build import build_baseline

TENANTS = ("acme", "globex", "initech", "umbrella")
MODEL, VERSION = "bench-model", "1"
CATEGORIES = tuple(f"category-{i:02d}" for i in range(12))
DAY_MS = 86_400_000
END_MS = 1_795_000_000_000
ENVELOPE = 100


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
