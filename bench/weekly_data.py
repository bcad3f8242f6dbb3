"""The weekly-run benchmark's data: K (tenant, model) keys of inference records spread over the
7 days before END, in envelopes of 100, the state cells they make, and one baseline per model
from a reference sample of the same shape."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
from aiokafka.partitioner import DefaultPartitioner

from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.tables.baseline_build import build_baseline

DAY_MS = 86_400_000
END_MS = 1_795_305_600_000          # 2026-11-22T00:00:00Z, a midnight: the window is the 7 days before
WINDOW_DAYS = 7
MODELS = 10
VERSION = "1"
ENVELOPE = 100
CATEGORIES = tuple(f"cat-value-{i}" for i in range(8))
REFERENCE_RECORDS = 2000


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
