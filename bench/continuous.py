"""Continuous detection benchmark: false alarms, delays, and what it costs the ingest.

    .venv/bin/python -m bench.continuous [--weeks 100] [--features 6] [--steps 5] [--records 200000]
                                         [--skip-throughput] [--processes 2]

1. Stationary streams, `--weeks` simulated model-weeks (5 events/s, 1 outcome/min, features
   drawn from the baseline's own shares) through the pure detection code the detectors agent
   calls (`tables/continuous_detection.apply`), fed minute bucket aggregates: every confirmed
   change is a false alert. No Kafka (a week is 3 million events).
2. Step changes, `--steps` seeds each, through the ingest fold (`tables/ingest.IngestFold` with its
   `BucketTracker`: real records, real binning, the watermark close) and the detection code:
   a feature turning 100% null and a numeric feature ×100 at 5 events/s, Brier up by 50% at 1
   outcome/s. Delay = confirmation time − change time + the allowed lateness (a minute leaves
   the ingest only once the watermark has passed it by that much), in event time and in events.
   (The Kafka path of the same thing is tests/integration/test_continuous.py.)
3. Ingest throughput of the real worker (bench/worker_ingest.py) on envelopes of 100 records,
   detection on and off alternated three times; the median ratio.

Prints a table, then one JSON line."""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np

from bench.continuous_streams import WEEK_MINUTES, minutes
from bench.ingest_records import bench_baseline, bench_records
from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.baseline_build import build_baseline
from model_monitoring.tables.continuous_detection import DetectionPolicy, ModelDetectors, apply
from model_monitoring.tables.health_buckets import MINUTE_MS, BucketBook, BucketTracker
from model_monitoring.tables.ingest import IngestFold
from model_monitoring.tables.partial import PartialState

LATENESS_MS = 60_000
START_MINUTE = 1_795_000_000_000 // MINUTE_MS


def small_baseline(n_features: int, brier: float = 0.2) -> Baseline:
    """The bench baseline cut to `n_features` (two thirds numeric), with the given Brier."""
    names = [f"numeric_{j:02d}" for j in range(20)][: max(1, (2 * n_features) // 3)]
    names += [f"cat_{j}" for j in range(5)][: n_features - len(names)]
    recs = [{**r, "features": {k: r["features"][k] for k in names}} for r in bench_records(5000, seed=99)]
    b = build_baseline(recs, model_id="bench-model", model_version="1", tenant_id=None, task="classification")
    return replace(b, brier=brier)


# ------------------------------------------------------------------------------------ stationary
def stationary_week(args: tuple[int, int]) -> tuple[int, int, int]:
    """One model-week: (confirmed changes, candidates raised, streams)."""
    seed, n_features = args
    baseline = small_baseline(n_features)
    rng = np.random.default_rng(seed)
    book, changes = ModelDetectors(), 0
    policy = DetectionPolicy()
    # three hours of warm-up (the history), then the measured week
    for message in minutes(baseline, rng, start_minute=START_MINUTE - 180, n_minutes=WEEK_MINUTES + 180,
                           brier=0.2):
        book, confirmed = apply(book, message, lambda v: baseline, policy)
        if message.closed_through > START_MINUTE:
            changes += len(confirmed)
    candidates = sum(s.candidates_this_week for s in book.streams.values())
    return changes, candidates, len(book.streams)


# ------------------------------------------------------------------------------------ steps
def brier_mix(p: np.ndarray, factor: float) -> float:
    """The share w of outcomes drawn from Bernoulli(1 − p) instead of Bernoulli(p) that
    multiplies the expected Brier by `factor`."""
    calibrated = float(np.mean(p * (1 - p)))
    flipped = float(np.mean(p**3 + (1 - p) ** 3))
    return (factor - 1) * calibrated / (flipped - calibrated)


def no_partial(key: bytes) -> PartialState | None:
    """Each fold of `step_run` starts from empty partials (it measures the detectors only)."""
    return None


def step_run(kind: str, seed: int, baseline: Baseline, policy: DetectionPolicy) -> tuple[float, int]:
    """Delay (minutes of event time, events or outcomes) of one step change through the ingest
    fold and the detection code."""
    rng = np.random.default_rng(seed)
    rate = 5
    change_minute = START_MINUTE + 120 + int(rng.integers(0, 60))  # two hours of history first
    end_minute = change_minute + 120
    numeric = [n for n, f in baseline.features.items() if f.bins.kind == "numeric"]
    target = numeric[0]
    source = bench_records(rate * 60 * (change_minute - START_MINUTE + 121), seed=seed)
    books: dict[str, bytes] = {}
    detectors, offset, outcome_offset = ModelDetectors(), 0, 0
    flip = brier_mix(rng.uniform(0.05, 0.95, 100_000), 1.5)
    after_change = 0
    minute = START_MINUTE
    while minute < end_minute:
        # one minute of traffic, folded in batches of 20 s
        for second0 in range(0, 60, 20):
            batch: list[tuple[int, int, InferenceRecord]] = []
            outcomes: list[tuple[int, int, OutcomeRecord]] = []
            for s in range(second0, second0 + 20):
                t_ms = minute * MINUTE_MS + s * 1000
                changed = minute >= change_minute
                for _ in range(rate):
                    doc = next(source)
                    features = {k: doc["features"].get(k) for k in baseline.features}
                    if changed and kind == "null_feature":
                        features[target] = None
                    if changed and kind == "scaled_feature" and features[target] is not None:
                        features[target] = features[target] * 100
                    p = float(rng.uniform(0.05, 0.95))
                    pid = f"{seed}-{offset}"
                    batch.append((offset, 0, InferenceRecord(pid, "t", "m", "1", t_ms + int(rng.integers(0, 1000)),
                                                             p, None, features)))
                    offset += 1
                    if changed and kind != "brier":
                        after_change += 1
                    if kind == "brier" and offset % rate == 0:  # 1 outcome/s
                        y = float(rng.random() < ((1 - p) if (changed and rng.random() < flip) else p))
                        outcomes.append((outcome_offset, 0, OutcomeRecord(pid, "t", "m", y, t_ms + 500)))
                        outcome_offset += 1
                        if changed:
                            after_change += 1
            for fold_kind, size in (("f", len(batch)), ("o", len(outcomes))):
                if not size:
                    continue
                tracker = BucketTracker(0, LATENESS_MS, lambda k: BucketBook.from_bytes(books[k]) if k in books else None)
                fold = IngestFold(0, bucket_ms=86_400_000, retention_ms=10**12,
                                  baseline_for=lambda *_: baseline, buckets=tracker)
                joins = step_run.joins  # type: ignore[attr-defined]
                if fold_kind == "f":
                    out = fold.fold_predictions(batch, no_partial, joins.get, -1)
                else:
                    out = fold.fold_outcomes(outcomes, no_partial, joins.get, -1, 10**12)
                joins.update(out.joins)
                books.update({k: b.to_bytes() for k, b in out.bucket_books.items()})
                for closed in out.closed_buckets:
                    detectors, confirmed = apply(detectors, closed, lambda v: baseline, policy)
                    for change in confirmed:
                        wanted = {"null_feature": ("missing_share", target),
                                  "scaled_feature": ("out_of_range_share", target),
                                  "brier": ("brier", "brier")}[kind]
                        if (change.metric, change.subject) == wanted and change.confirmed_at_ms > change_minute * MINUTE_MS:
                            delay_min = (change.confirmed_at_ms + LATENESS_MS - change_minute * MINUTE_MS) / MINUTE_MS
                            # events from the change to the moment the minute leaves the ingest
                            events = after_change
                            return delay_min, events
        minute += 1
    return math.inf, after_change


step_run.joins = {}  # type: ignore[attr-defined]


def steps(n: int) -> dict[str, list[tuple[float, int]]]:
    # predictions uniform on [0.05, 0.95], outcomes Bernoulli(p): Brier E[p(1 − p)] before the step
    baseline = small_baseline(6, brier=float(np.mean([p * (1 - p) for p in np.linspace(0.05, 0.95, 10_001)])))
    policy = DetectionPolicy()
    out: dict[str, list[tuple[float, int]]] = {}
    for kind in ("null_feature", "scaled_feature", "brier"):
        out[kind] = []
        for seed in range(n):
            step_run.joins = {}  # type: ignore[attr-defined]
            out[kind].append(step_run(kind, 100 + seed, baseline, policy))
    return out


# ------------------------------------------------------------------------------------ throughput
def throughput(records: int, rounds: int = 3) -> tuple[list[float], list[float]]:
    import asyncio
    import shutil
    import tempfile
    import uuid
    from pathlib import Path

    import orjson

    from bench.ingest_records import create_topics, preproduce
    from bench.worker_ingest import Variant, measure_worker
    from model_monitoring.commands.broker import make_broker
    from model_monitoring.commands.harness import produce

    workdir = Path(tempfile.mkdtemp(prefix="bench-continuous-"))
    broker = make_broker("tansu", workdir / "broker", log_path=workdir / "broker.log")
    broker.start()
    on: list[float] = []
    off: list[float] = []
    try:
        run = f"c{uuid.uuid4().hex[:6]}"
        single, envelopes, baselines = f"{run}.features", f"{run}.features-envelopes", f"{run}.baselines"
        asyncio.run(create_topics(broker.bootstrap, [single, envelopes], 4))
        asyncio.run(create_topics(broker.bootstrap, [baselines], 1))
        baseline = bench_baseline()
        asyncio.run(produce(broker.bootstrap, [(baselines, baseline.key().encode(), orjson.dumps(baseline.to_dict()))]))
        asyncio.run(preproduce(broker.bootstrap, records, single, envelopes))
        timeout = max(120.0, records / 500)
        for i in range(rounds):
            for enabled, into in (("true", on), ("false", off)) if i % 2 == 0 else (("false", off), ("true", on)):
                variant = Variant(env={"MODEL_MONITORING_CONTINUOUS_ENABLED": enabled})
                result = measure_worker(broker, envelopes, baselines, records, 4, workdir, timeout, variant)
                into.append(result.rps)
                print(f"throughput round {i + 1}: detection {'on ' if enabled == 'true' else 'off'} "
                      f"{result.rps:,.0f} records/s", flush=True)
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return on, off


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weeks", type=int, default=100)
    ap.add_argument("--features", type=int, default=6)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    with multiprocessing.Pool(args.processes) as pool:
        weeks = pool.map(stationary_week, [(seed, args.features) for seed in range(args.weeks)])
    false_alerts = sum(w[0] for w in weeks)
    candidates = sum(w[1] for w in weeks)
    streams = weeks[0][2] if weeks else 0
    print(f"stationary: {args.weeks} model-weeks of {streams} streams in {time.perf_counter() - t0:.0f}s: "
          f"{false_alerts} false alerts, {candidates} candidates tested", flush=True)

    t0 = time.perf_counter()
    delays = steps(args.steps)
    print(f"steps: {args.steps} seeds each in {time.perf_counter() - t0:.0f}s", flush=True)

    on: list[float] = []
    off: list[float] = []
    if not args.skip_throughput:
        on, off = throughput(args.records)
    ratios = [a / b for a, b in zip(on, off, strict=False)]

    med = {k: statistics.median(d for d, _ in v) for k, v in delays.items()}
    med_events = {k: statistics.median(e for _, e in v) for k, v in delays.items()}
    fa_rate = false_alerts / max(1, args.weeks)
    rows = [("figure", "value", "target"),
            ("false alerts per model-week", f"{fa_rate:.3f} ({false_alerts}/{args.weeks}; {streams} streams)", "≤ 0.05"),
            ("candidates tested per model-week", f"{candidates / max(1, args.weeks):.2f}", ""),
            ("null feature: median delay", f"{med['null_feature']:.1f} min, {med_events['null_feature']:.0f} events", "≤ 15 min"),
            ("feature ×100: median delay", f"{med['scaled_feature']:.1f} min, {med_events['scaled_feature']:.0f} events", "≤ 15 min"),
            ("Brier +50%: median delay", f"{med['brier']:.1f} min, {med_events['brier']:.0f} outcomes", "≤ 500 outcomes"),
            ("ingest on/off (median of 3)", f"{statistics.median(ratios):.3f}" if ratios else "skipped", "≥ 0.9")]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width, strict=False)))
    for kind, values in delays.items():
        print(f"  {kind}: " + ", ".join(f"{d:.1f} min/{e} ev" for d, e in values))
    out: dict[str, Any] = {
        "false_alerts_per_model_week": round(fa_rate, 4),
        "model_weeks": args.weeks, "streams_per_model": streams,
        "candidates_per_model_week": round(candidates / max(1, args.weeks), 3),
        "median_delay_minutes": {k: round(v, 2) for k, v in med.items()},
        "median_delay_events": {k: med_events[k] for k in ("null_feature", "scaled_feature")},
        "median_delay_outcomes": med_events["brier"],
        "throughput_ratio": round(statistics.median(ratios), 3) if ratios else None,
        "throughput_on_rps": [round(x) for x in on], "throughput_off_rps": [round(x) for x in off],
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
