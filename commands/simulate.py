"""Realistic traffic for the demo, the tests and the benchmarks (`model-monitoring simulate`).

Deterministic for a seed. Each model has numeric features (heavy-tailed amounts, a 90%-zeros
discount, counts, values with nulls), categorical and boolean ones; a prediction from a logistic
score; an outcome drawn from it after a label lag of hours to days. Scenarios inject what the
monitor must catch: a numeric shift, an unseen category, an accuracy drop, a tenant too small to
judge, plus duplicated, early and malformed messages."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from model_monitoring.schemas.timestamps import format_timestamp

DAY_MS = 86_400_000
INDUSTRIES = ("retail", "tech", "finance", "health", "manufacturing", "media")
REGIONS = ("emea", "amer", "apac")
LEAD_SOURCES = ("web", "referral", "partner", "event")


@dataclass(frozen=True)
class Scenario:
    """What to inject. Keys are "tenant:model". The injections are active in `weeks`, counted
    back from the end of the stream (0: the last 7 days, 1: the 7 days before them, …)."""

    numeric_shift: tuple[str, ...] = ()        # pipeline_value ×3
    unseen_category: tuple[str, ...] = ()      # lead_source "chatbot" (unseen) for 40%
    accuracy_drop: tuple[str, ...] = ()        # outcomes unrelated to predictions
    small_tenants: tuple[str, ...] = ()        # tenants with ~30 events a week
    duplicate_rate: float = 0.0                # share of messages sent twice
    early_outcome_rate: float = 0.0            # share of outcomes logged before their prediction
    malformed_rate: float = 0.0                # share of extra malformed messages
    outcome_rate: float = 0.8                  # share of predictions whose outcome arrives
    weeks: tuple[int, ...] = (0,)              # when the injections are active


@dataclass(frozen=True)
class StreamConfig:
    tenants: tuple[str, ...] = ("acme", "globex", "initech")
    models: tuple[str, ...] = ("risk-scoring", "churn")
    version: str = "3"
    events_per_key: int = 4000                 # per (tenant, model) over the whole span
    days: int = 14
    end_ms: int = 1_795_000_000_000            # 2026-11-19T…; the demo passes "now"
    seed: int = 7
    scenario: Scenario = field(default_factory=Scenario)
    envelope_size: int = 1                     # >1: features in {"records": [...]} envelopes


def _features(rng: np.random.Generator, n: int, model: str, shifted: np.ndarray,
              crypto: np.ndarray) -> list[dict[str, Any]]:
    amount = rng.lognormal(mean=7.0 if model == "risk-scoring" else 5.5, sigma=0.8, size=n)
    # the injected shifts touch inputs the score does not use, so that the drift they cause
    # is the only thing that changes: predictions and accuracy stay as they were
    pipeline = rng.lognormal(mean=9.0, sigma=0.6, size=n)
    pipeline = np.where(shifted, pipeline * 3.0, pipeline)
    source = rng.choice(LEAD_SOURCES, size=n, p=(0.45, 0.25, 0.2, 0.1))
    source = np.where(crypto & (rng.random(n) < 0.4), "chatbot", source)
    age = rng.gamma(2.0, 30.0, size=n)
    age_missing = rng.random(n) < 0.05
    discount = np.where(rng.random(n) < 0.9, 0.0, rng.uniform(0.05, 0.4, size=n))
    contacts = rng.poisson(3.0, size=n)
    industry = rng.choice(INDUSTRIES, size=n, p=(0.3, 0.25, 0.2, 0.1, 0.1, 0.05))
    champion = rng.random(n) < 0.4
    out = []
    for i in range(n):
        out.append({"amount": round(float(amount[i]), 2),
                    "age_days": None if age_missing[i] else round(float(age[i]), 1),
                    "discount": round(float(discount[i]), 3), "contacts": int(contacts[i]),
                    "industry": str(industry[i]), "has_champion": bool(champion[i]),
                    "pipeline_value": round(float(pipeline[i]), 2), "lead_source": str(source[i])})
    return out


def _score(f: dict[str, Any]) -> float:
    z = (-1.0 + 0.35 * (math.log(f["amount"] + 1) - 6.5) - 0.01 * (f["age_days"] or 60.0)
         + 2.0 * f["discount"] - 0.15 * f["contacts"] + (0.6 if f["has_champion"] else 0.0)
         + (0.4 if f["industry"] == "tech" else 0.0))
    return 1.0 / (1.0 + math.exp(-z))


def reference_records(model: str, n: int = 20_000, seed: int = 1, version: str = "3") -> list[dict[str, Any]]:
    """A reference sample with outcomes, for `baseline build`."""
    rng = np.random.default_rng(seed)
    feats = _features(rng, n, model, np.zeros(n, bool), np.zeros(n, bool))
    out = []
    for i, f in enumerate(feats):
        p = _score(f)
        out.append({"predictionId": f"ref-{model}-{i}", "tenantId": "*", "modelId": model,
                    "modelVersion": version, "timestamp": "2026-10-01T00:00:00Z",
                    "prediction": round(p, 6), "features": f,
                    "outcome": int(rng.random() < p)})
    return out


@dataclass(frozen=True)
class Message:
    kind: str          # "features" | "outcomes"
    key: bytes
    value: bytes
    time_ms: int       # log order


def generate(cfg: StreamConfig) -> Iterator[Message]:
    """The whole stream in log order (features and outcomes interleaved by arrival time)."""
    rng = np.random.default_rng(cfg.seed)
    sc = cfg.scenario
    start_ms = cfg.end_ms - cfg.days * DAY_MS
    messages: list[Message] = []
    for tenant in cfg.tenants:
        for model in cfg.models:
            key = f"{tenant}:{model}"
            n = 60 if tenant in sc.small_tenants else cfg.events_per_key
            ts = np.sort(rng.integers(start_ms, cfg.end_ms, size=n))
            injected = np.isin((cfg.end_ms - 1 - ts) // (7 * DAY_MS), sc.weeks)
            feats = _features(rng, n, model, injected & (key in sc.numeric_shift),
                              injected & (key in sc.unseen_category))
            regions = rng.choice(REGIONS, size=n, p=(0.5, 0.3, 0.2))
            for i in range(n):
                pid = f"{tenant}-{model}-{cfg.seed}-{i}"
                p = _score(feats[i])
                record = {"predictionId": pid, "tenantId": tenant, "modelId": model,
                          "modelVersion": cfg.version, "timestamp": format_timestamp(int(ts[i])),
                          "prediction": round(p, 6), "segment": str(regions[i]),
                          "features": feats[i]}
                messages.append(Message("features", pid.encode(), orjson.dumps(record), int(ts[i])))
                if rng.random() >= sc.outcome_rate:
                    continue
                truth = 0.5 if (injected[i] and key in sc.accuracy_drop) else p
                y = int(rng.random() < truth) if not (injected[i] and key in sc.accuracy_drop) else int(p < 0.5)
                lag = int(rng.integers(3_600_000, 5 * DAY_MS))
                arrive = int(ts[i]) + lag
                if rng.random() < sc.early_outcome_rate:
                    arrive = int(ts[i]) - 1  # logged before its prediction
                outcome_ts = min(arrive if arrive > ts[i] else int(ts[i]) + 1, cfg.end_ms - 1)
                outcome = {"predictionId": pid, "tenantId": tenant, "modelId": model,
                           "outcome": y, "timestamp": format_timestamp(outcome_ts)}
                messages.append(Message("outcomes", pid.encode(), orjson.dumps(outcome), arrive))
    if sc.duplicate_rate:
        dup = [m for m in messages if rng.random() < sc.duplicate_rate]
        messages += [Message(m.kind, m.key, m.value, m.time_ms + 1) for m in dup]
    if sc.malformed_rate:
        bad = int(len(messages) * sc.malformed_rate)
        for i in range(bad):
            kind = "features" if i % 2 == 0 else "outcomes"
            messages.append(Message(kind, f"bad-{i}".encode(), MALFORMED[i % len(MALFORMED)],
                                    int(rng.integers(start_ms, cfg.end_ms))))
    messages.sort(key=lambda m: m.time_ms)
    if cfg.envelope_size > 1:
        yield from _envelopes(messages, cfg.envelope_size)
    else:
        yield from messages


MALFORMED: tuple[bytes, ...] = (
    b'{"predictionId": "x", "tenantId": ',                       # truncated JSON
    b"\xff\xfe not utf-8",                                       # invalid UTF-8
    b'{"predictionId": 5, "tenantId": "acme", "modelId": "m"}',  # wrong types, missing fields
    b"[]",
    b'{"predictionId": "p", "tenantId": "acme", "modelId": "churn", "outcome": "NaN", "timestamp": "2026-11-10T00:00:00Z"}',
)


def _envelopes(messages: list[Message], size: int) -> Iterator[Message]:
    batch: list[Message] = []
    for m in messages:
        if m.kind != "features" or m.key.startswith(b"bad-"):
            yield m
            continue
        batch.append(m)
        if len(batch) == size:
            yield _wrap(batch)
            batch = []
    if batch:
        yield _wrap(batch)


def _wrap(batch: list[Message]) -> Message:
    body = b'{"records":[' + b",".join(m.value for m in batch) + b"]}"
    return Message("features", batch[0].key, body, batch[-1].time_ms)


@dataclass(frozen=True)
class SalesConfig:
    """The `sales` scenario: one model scoring sales opportunities, whose outcomes (won or lost)
    arrive 2–120 days after the prediction (log-normal, median ~30 days; ~5% later than the
    90-day join TTL). The model goes wrong on the predictions made from `degrade_day` (its scores
    stop meaning anything), and its scores move up from `shift_day` (both counted in days from
    the start). Deterministic for a seed."""

    tenant: str = "umbrella"
    model: str = "deal-scoring"
    version: str = "1"
    days: int = 140
    per_day: int = 100
    end_ms: int = 1_795_046_400_000
    degrade_day: int = 84
    shift_day: int = 133
    seed: int = 5
    median_lag_days: float = 30.0
    lag_sigma: float = 0.65


def sales_lag_ms(rng: np.random.Generator, median_days: float, sigma: float) -> int:
    days = float(np.clip(rng.lognormal(math.log(median_days), sigma), 2.0, 120.0))
    return int(days * DAY_MS)


def generate_sales(cfg: SalesConfig) -> Iterator[Message]:
    """Predictions and the outcomes that have arrived by `end_ms`, in arrival order."""
    rng = np.random.default_rng(cfg.seed)
    start_ms = cfg.end_ms - cfg.days * DAY_MS
    messages: list[Message] = []
    for day in range(cfg.days):
        ts = np.sort(rng.integers(start_ms + day * DAY_MS, start_ms + (day + 1) * DAY_MS, size=cfg.per_day))
        feats = _features(rng, cfg.per_day, cfg.model, np.zeros(cfg.per_day, bool), np.zeros(cfg.per_day, bool))
        for i in range(cfg.per_day):
            pid = f"{cfg.tenant}-{cfg.model}-{cfg.seed}-{day}-{i}"
            p = _score(feats[i])
            truth = p if day < cfg.degrade_day else float(rng.random())  # degraded: scores mean nothing
            if day >= cfg.shift_day:
                p = min(1.0, p + 0.2)  # the score distribution moves
            record = {"predictionId": pid, "tenantId": cfg.tenant, "modelId": cfg.model,
                      "modelVersion": cfg.version, "timestamp": format_timestamp(int(ts[i])),
                      "prediction": round(p, 6), "features": feats[i]}
            messages.append(Message("features", pid.encode(), orjson.dumps(record), int(ts[i])))
            y = int(rng.random() < truth)
            arrive = int(ts[i]) + sales_lag_ms(rng, cfg.median_lag_days, cfg.lag_sigma)
            if arrive >= cfg.end_ms:
                continue  # not closed yet
            outcome = {"predictionId": pid, "tenantId": cfg.tenant, "modelId": cfg.model,
                       "outcome": y, "timestamp": format_timestamp(arrive)}
            messages.append(Message("outcomes", pid.encode(), orjson.dumps(outcome), arrive))
    messages.sort(key=lambda m: m.time_ms)
    yield from messages
