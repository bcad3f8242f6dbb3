"""Ingest benchmark: the practical limit of this work without faust, against the real worker.

    .venv/bin/python -m bench.ingest [--records 200000] [--partitions 4] [--engine tansu|kafka|both]
                                     [--workers 2] [--rounds 3]

Starts a broker on a free loopback port — the bundled Tansu (`--engine tansu`, the default),
Apache Kafka (`kafka`, commands/kafka_broker.py), or one after the other (`both`) — pre-produces
N inference records (25 features: 20 numeric, 5 categorical, ~700 bytes) as single-record
messages to one topic and as envelopes of 100 to another, then measures, for each: (a) a plain
aiokafka consumer doing the same work (getmany, orjson, schema validation, the project's
binning, one changelog message per (partition, tenant, model, version, segment, day) per batch,
commit) and (b) the worker process ingesting the records into its tables. Prints a table per
broker (with `both`, then the two side by side), then one JSON line: today's keys for one
engine, {"engines": {"tansu": {...}, "kafka": {...}}} for both. With `--workers K` (K > 1) the
envelopes are measured once more with K worker processes in one group, right after the single
worker on the same broker, and the JSON adds `scale_out` (K workers' records/s ÷ one worker's,
envelopes) with their records/s and CPU µs/record. With `--rounds R` each shape is measured R
times, the plain consumer and the worker(s) alternately: the table shows the round with the
median ratio (the median scale-out for K workers), and the JSON adds each figure's rounds as
`ratio_rounds`, `envelope_ratio_rounds` and `scale_out_rounds`. `cores busy` (and in the JSON
`scale_out_cores_busy`, `scale_out_one_worker_cores_busy`) is the whole machine's busy cores while
the worker(s) ingested (/proc/stat): what shows whether a scale-out was stopped by the machine.
`in place` (JSON `scale_out_in_place`, `scale_out_one_worker_in_place`) is the share of the
mispartitioned records the worker(s) folded in place rather than through the repartition topic.
Stops all it starts."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import orjson

from bench.ingest_records import ENVELOPE, bench_baseline, create_topics, preproduce
from bench.plain_consumer import Plain, plain_consume
from bench.worker_ingest import Variant, WorkerRun, measure_worker
from model_monitoring.commands.broker import ENGINES, make_broker
from model_monitoring.commands.harness import produce
from model_monitoring.commands.kafka_broker import BrokerUnavailable

Results = dict[str, tuple[Plain, WorkerRun]]
Rounds = dict[str, list[float]]  # label -> each round's ratio (scale-out for the K-worker label)
SHAPES = (("single", ""), ("envelope", "envelope_"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--engine", choices=(*ENGINES, "both"), default="tansu",
                    help="the broker: the embedded Tansu (default), Apache Kafka, or both in turn")
    ap.add_argument("--transport", choices=("mmkafka", "kafka"), default="mmkafka",
                    help="the worker's transport: the project's (default) or faust's own, to compare")
    ap.add_argument("--faust-setting", action="append", default=[], metavar="NAME=VALUE",
                    help="override a faust setting of the worker (JSON, or module:attr), to compare")
    ap.add_argument("--only", choices=("single", "envelope"), help="measure one shape only")
    ap.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="a service setting of the worker, e.g. MODEL_MONITORING_BATCH_SIZE=20")
    ap.add_argument("--timeout", type=float, default=0.0, help="seconds per phase (default: from N)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure each shape this many times, plain and worker alternately; report the median")
    ap.add_argument("--workers", type=int, default=1,
                    help="also measure the envelopes with this many workers in one group (scale-out)")
    args = ap.parse_args(argv)
    n = args.records
    timeout = args.timeout or max(120.0, n / 500)
    variant = Variant(args.transport, dict(o.split("=", 1) for o in args.faust_setting),
                      dict(o.split("=", 1) for o in args.worker_env))
    engines = ENGINES if args.engine == "both" else (args.engine,)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    by_engine: dict[str, Results] = {}
    rounds_by_engine: dict[str, Rounds] = {}
    try:
        for engine in engines:
            try:
                by_engine[engine], rounds_by_engine[engine] = measure_engine(engine, args, variant, workdir, timeout)
            except BrokerUnavailable as exc:
                print(f"{engine}: no broker: {exc}", file=sys.stderr, flush=True)
                return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for engine, results in by_engine.items():
        if len(by_engine) > 1:
            print(f"\n{engine}:")
        print_table(n, results)
    summaries = {engine: summary(n, results, rounds_by_engine[engine]) for engine, results in by_engine.items()}
    if len(summaries) > 1:
        print()
        print_side_by_side(n, by_engine)
        print(json.dumps({"engines": summaries}), flush=True)
    else:
        print(json.dumps(next(iter(summaries.values()))), flush=True)
    return 0


def measure_engine(engine: str, args: argparse.Namespace, variant: Variant, workdir: Path,
                   timeout: float) -> tuple[Results, Rounds]:
    """Both shapes on one broker of that engine, started here and stopped before returning."""
    n, parts = args.records, args.partitions
    broker = make_broker(engine, workdir / f"{engine}-broker", log_path=workdir / f"{engine}.log")
    broker.start()
    try:
        run = f"b{uuid.uuid4().hex[:6]}"
        single, envelopes = f"{run}.features", f"{run}.features-envelopes"
        baselines, changelog = f"{run}.baselines", f"{run}.plain-changelog"
        asyncio.run(create_topics(broker.bootstrap, [single, envelopes, changelog], parts))
        asyncio.run(create_topics(broker.bootstrap, [baselines], 1))
        baseline = bench_baseline()
        asyncio.run(produce(broker.bootstrap, [(baselines, baseline.key().encode(),
                                                orjson.dumps(baseline.to_dict()))]))
        t0 = time.perf_counter()
        size, mean = asyncio.run(asyncio.wait_for(
            preproduce(broker.bootstrap, n, single, envelopes), timeout))
        print(f"{engine}: pre-produced {n:,} records ({mean:.0f} bytes each, {size / 1e6:.0f} MB) as "
              f"single messages and as envelopes of {ENVELOPE}, {parts} partitions, in "
              f"{time.perf_counter() - t0:.1f}s; worker: {variant.describe()}", flush=True)
        results: Results = {}
        rounds: Rounds = {}
        for label, topic in (("single", single), ("envelope", envelopes)):
            if args.only and label != args.only:
                continue
            measured: list[tuple[Plain, WorkerRun, WorkerRun | None]] = []
            for r in range(args.rounds):
                tag = f"{engine} {label}" + (f" round {r + 1}/{args.rounds}" if args.rounds > 1 else "")
                plain = Plain(*asyncio.run(plain_consume(broker.bootstrap, topic, changelog, n, baseline, timeout)))
                print(f"{tag}: plain consumer {plain.rps:,.0f} records/s", flush=True)
                worker = measure_worker(broker, topic, baselines, n, parts, workdir, timeout, variant)
                print(f"{tag}: worker {worker.rps:,.0f} records/s", flush=True)
                many = None
                if label == "envelope" and args.workers > 1:
                    many = measure_worker(broker, topic, baselines, n, parts, workdir, timeout, variant,
                                          workers=args.workers)
                    print(f"{tag}: {args.workers} workers {many.rps:,.0f} records/s", flush=True)
                measured.append((plain, worker, many))
            rounds[label] = [w.rps / p.rps for p, w, _ in measured]
            plain, worker, _ = measured[median_index(rounds[label])]
            results[label] = (plain, worker)
            if label == "envelope" and args.workers > 1:
                scale = scale_label(args.workers)
                rounds[scale] = [m.rps / w.rps for _, w, m in measured if m is not None]
                plain, worker, many = measured[median_index(rounds[scale])]
                assert many is not None
                # the median scale-out's round: its one-worker run is the reference of the row
                results[scale] = (plain, many)
                if args.rounds > 1:
                    results[f"envelope (x{args.workers} round's 1 worker)"] = (plain, worker)
        return results, rounds
    finally:
        broker.stop()


def scale_label(workers: int) -> str:
    return f"envelope x{workers} workers"


def median_index(values: Sequence[float]) -> int:
    """The index of the median value (the lower one of the middle two for an even count)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    return order[(len(values) - 1) // 2]


def summary(n: int, results: Results, rounds: Rounds | None = None) -> dict[str, object]:
    """The JSON of one engine: today's keys, then CPU µs per record, then the scale-out, then
    each round's figure when there were several."""
    out: dict[str, object] = {}
    for label, prefix in SHAPES:
        p, w = results.get(label, (None, None))
        out[f"{prefix}plain_rps"] = round(p.rps) if p else None
        out[f"{prefix}worker_rps"] = round(w.rps) if w else None
        out[f"{prefix}ratio"] = round(w.rps / p.rps, 3) if p and w else None
    out["peak_rss_mb"] = round(max(w.peak_rss_mb for _, w in results.values()), 1)
    for label, prefix in SHAPES:
        p, w = results.get(label, (None, None))
        out[f"{prefix}plain_cpu_us"] = round(p.cpu_s / n * 1e6, 1) if p else None
        out[f"{prefix}worker_cpu_us"] = round(w.cpu_s / n * 1e6, 1) if w else None
    for label, (_, many) in results.items():
        if label.startswith("envelope x"):
            workers = int(label.split("x", 1)[1].split()[0])
            one = results.get(f"envelope (x{workers} round's 1 worker)", results.get("envelope"))
            assert one is not None
            out["scale_out"] = round(many.rps / one[1].rps, 3)
            out["scale_out_workers"] = workers
            out["scale_out_worker_rps"] = round(many.rps)
            out["scale_out_worker_cpu_us"] = round(many.cpu_s / n * 1e6, 1)
            out["scale_out_cores_busy"] = round(many.cores_busy, 2)
            out["scale_out_one_worker_cores_busy"] = round(one[1].cores_busy, 2)
            out["scale_out_in_place"] = _share(many.in_place)
            out["scale_out_one_worker_in_place"] = _share(one[1].in_place)
    if rounds and max(map(len, rounds.values()), default=0) > 1:
        for label, values in rounds.items():
            name = ("scale_out" if label.startswith("envelope x")
                    else "ratio" if label == "single" else "envelope_ratio")
            out[f"{name}_rounds"] = [round(v, 3) for v in values]
    return out


def _share(value: float) -> float | None:
    return None if value != value else round(value, 3)  # NaN: no record was mispartitioned


def print_rows(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)))


def print_table(n: int, results: Results) -> None:
    rows = [("", "plain rec/s", "worker rec/s", "ratio", "first-to-last", "ready s",
             "CPU µs/rec plain", "worker", "CPU ratio", "peak RSS MB", "cores busy", "in place", "binned")]
    for label, (p, w) in results.items():
        plain_us, worker_us = p.cpu_s / n * 1e6, w.cpu_s / n * 1e6
        rows.append((label, f"{p.rps:,.0f}", f"{w.rps:,.0f}", f"{w.rps / p.rps:.3f}",
                     f"{w.rps_first_to_last:,.0f}", f"{w.ready_s:.1f}", f"{plain_us:.0f}",
                     f"{worker_us:.0f}", f"{plain_us / worker_us:.3f}", f"{w.peak_rss_mb:.0f}",
                     f"{w.cores_busy:.2f}", f"{w.in_place:.2f}", f"{w.binned:,}/{n:,}"))
    print_rows(rows)
    print("plain: first record received to N committed. worker: N / (the /metrics poll that saw "
          "all N consumed - /readyz first 200); first-to-last: from the first poll that saw "
          "records (NaN: all in one lump). CPU: the consumer's process (worker: all its threads, "
          "from ready) per record — steadier than rates on a shared machine. cores busy: the "
          "whole machine's (broker, bench and workers), from ready to all N consumed: at 2.0 the "
          "2 cores are full and nothing more can run. in place: the share of the records that "
          "arrived on another partition than their prediction's folded where they arrived "
          "(the rest went through the repartition topic).")


def print_side_by_side(n: int, by_engine: dict[str, Results]) -> None:
    """One row per shape and figure, one column per broker."""
    engines = list(by_engine)
    rows: list[tuple[str, ...]] = [("", "", *engines)]
    figures = (("worker/plain ratio", lambda p, w: f"{w.rps / p.rps:.3f}"),
               ("plain rec/s", lambda p, w: f"{p.rps:,.0f}"),
               ("worker rec/s", lambda p, w: f"{w.rps:,.0f}"),
               ("plain CPU µs/rec", lambda p, w: f"{p.cpu_s / n * 1e6:.0f}"),
               ("worker CPU µs/rec", lambda p, w: f"{w.cpu_s / n * 1e6:.0f}"),
               ("worker peak RSS MB", lambda p, w: f"{w.peak_rss_mb:.0f}"))
    for label in [shape for shape, _ in SHAPES] + [k for k in by_engine[engines[0]] if k.startswith("envelope x")]:
        for name, cell in figures:
            cells = [cell(*by_engine[e][label]) if label in by_engine[e] else "-" for e in engines]
            rows.append((label, name, *cells))
    print_rows(rows)


if __name__ == "__main__":
    sys.exit(main())
