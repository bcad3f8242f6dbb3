"""Weekly-run benchmark: time from trigger to `workflow.job.completed` against the real worker.

    .venv/bin/python bench/weekly_run.py [--sizes 100,1000,5000] [--features 25] [--partitions 8]
                                         [--events-per-key 10] [--heavy-keys 1000] [--heavy-factor 10]
                                         [--engine tansu|kafka|both] [--worker-env NAME=VALUE]
                                         [--rounds R] [--profile DIR [--profile-format svg|txt]]

The broker on a free 127.0.0.1 port: the embedded Tansu (memory only; `--engine tansu`, the
default), Apache Kafka (`kafka`, log on disk, commands/kafka_broker.py), or each in turn
(`both`, the same plan on each, then the two side by side). A fresh broker per measurement by
default, because Tansu keeps every changelog write and never compacts — it grows by ~5 GB
during the 5,000-key run, almost all of it the job tracker's changelog (`--broker shared` keeps
one for the whole run); Kafka gets the same treatment, so the two compare like for like. For
each measurement a fresh service (app id, topic prefix, data dir) and one worker process, with
the broker's profile (`Broker.worker_env()`):

1. one baseline per model (10 models) from a small deterministic reference sample of the same
   shape (20 numeric + 5 categorical features by default), published to the baselines topic and
   waited for (`model_monitoring_records_consumed_total{topic=<baselines>}`);
2. K (tenant, model) keys = K/10 tenants x 10 models, `--events-per-key` inference records each,
   timestamps spread over the 7 days before END (a midnight), produced in envelopes of 100;
   waited for until the group's lag is 0 on the features topic, the repartition topic the worker
   forwards records to, and the detectors' minute buckets (at least once: exactly once, the
   features topic alone);
3. a trigger `{"job": "model-monitoring", "jobRunId": ..., "metadata": {"windowEnd": END}}`;
   the wall clock runs from producing it to reading the completion (a consumer on the completed
   and failed topics is positioned before the trigger is sent), and the completion's
   `durationMs` is what the service reports.

With `--rounds R` the run is triggered R times on the same data, one after the other (jobRunIds
bench-K, bench-K-r2, ...: the same window, so the same work; the incidents the first round
opened go on); the table shows the median round and the JSON adds `seconds_rounds`, every
round's seconds per measurement (these machines are noisy).

After each round, while the worker idles, the same evaluation is measured without broker or
faust (`bench/weekly_pure.py`: the service's pure steps in the bench process, over the partials
and baselines the worker stored, read back once from their changelogs): `ref s` is its CPU
seconds (median round) and `ratio` the median over rounds of ref s / run seconds — the share of
the run that is the evaluation's own work, which the machine's speed of the hour moves alike
(`--no-reference` skips it). Its counts are held against the first round's completion; a
difference is printed, and `reference_matches` in the JSON says false.

Besides the sizes, one size (`--heavy-keys`, 1,000) is measured again with `--heavy-factor` (10)
times the events per key: the run should grow with keys, not with the events behind them.
`partials` in the table is the number of state cells in the window ((partition, tenant, model,
version, segment, day) keys, computed from where the producer put each envelope): what the
snapshot merges. The phase columns come from the worker's JSON log: trigger accepted -> first
key evaluated (fan-out + per-partition snapshot), first -> last key evaluated, last key
evaluated -> completion published (the job tracker; the last two overlap, as the tracker's work
interleaves with the evaluator's in the one event loop). `eval s` sums the evaluator's own
"evaluated ... in Xs" timings; `cpu s` is the worker's CPU time during the run; `checked` the
completion's `driftChecked` (keys x features when every key was evaluated); `broker MB` the
broker's RSS at the end of the measurement.

Progress goes to stderr; stdout holds the table and, as its last line, one JSON object
{"keys", "seconds", "events_behind", "duration_ms", ..., "reference_seconds", "reference_ratio"}
with one entry per measurement, in
order (null where a measurement did not complete); with `--engine both`, a table per broker,
one of seconds side by side, and {"engines": {"tansu": {...}, "kafka": {...}}}. Every phase has
a timeout; everything started is stopped in `finally` blocks, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.processes import PySpyRecord, proc_cpu_s, proc_rss_mb, py_spy_dump
from bench.weekly_data import END_MS, MODELS, WINDOW_DAYS, baseline_messages, envelopes
from bench.weekly_pure import PureRun, pure_run
from bench.weekly_trigger import log_phases, trigger_and_wait
from model_monitoring.commands.broker import ENGINES, Broker, make_broker
from model_monitoring.commands.harness import WorkerProcess, consumed, latest_values, produce, service_env
from model_monitoring.commands.kafka_broker import BrokerUnavailable
from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import Settings, load_settings
from model_monitoring.streams.topics import changelog_topic
from model_monitoring.tables.job_run import COUNT_FIELDS
from model_monitoring.tables.trigger import window_for


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_until(what: str, predicate: Any, timeout: float, every: float = 0.5) -> None:
    """Poll; a poll that fails (the worker's HTTP port busy while it ingests) counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except OSError:  # urllib's socket timeout, connection refused, ...
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f}s")
        time.sleep(every)


# ------------------------------------------------------------------ one measurement
@dataclass
class Measurement:
    keys: int
    events_per_key: int
    events_behind: int = 0
    partials: int = 0
    status: str = "not run"
    seconds: float | None = None
    duration_ms: int | None = None
    ingest_s: float = 0.0
    ready_s: float = 0.0
    cpu_s: float = 0.0
    worker_rss_mb: float = 0.0
    broker_rss_mb: float = 0.0
    phases: dict[str, Any] = field(default_factory=dict)
    completion: dict[str, Any] | None = None
    rounds: list[tuple[float, float, Any, dict[str, Any]]] = field(default_factory=list)  # s, cpu s, doc, phases
    pure: list[PureRun] = field(default_factory=list)  # the reference, measured after each round
    pure_s: float | None = None      # its median round's CPU seconds
    pure_ratio: float | None = None  # median over rounds of reference seconds / run seconds
    pure_matches: bool | None = None  # its counts equal the first round's completion

    @property
    def pure_ratio_rounds(self) -> list[float]:
        return [p.seconds / r[0] for p, r in zip(self.pure, self.rounds, strict=False) if r[0] > 0]

    @property
    def keys_per_s(self) -> float | None:
        return self.keys / self.seconds if self.seconds else None


def log_phases_after(worker: WorkerProcess, job_run_id: str) -> dict[str, Any]:
    time.sleep(0.5)  # the completion's log line
    return log_phases(worker, job_run_id)


def measure(broker: Broker, workdir: Path, result: Measurement, args: argparse.Namespace) -> None:
    keys, events_per_key = result.keys, result.events_per_key
    name = f"wr{keys}x{events_per_key}-{uuid.uuid4().hex[:6]}"
    env = service_env(broker, workdir / name, app_id=name, topic_prefix=f"{name}.", extra={
        "MODEL_MONITORING_PARTITIONS": str(args.partitions),
        "MODEL_MONITORING_CRON_ENABLED": "false",
        "MODEL_MONITORING_LOG_LEVEL": "info",
        "MODEL_MONITORING_RUN_DEADLINE_SECONDS": str(int(args.run_timeout + 60)),
        **dict(o.split("=", 1) for o in args.worker_env),
    })
    s = load_settings(env)
    asyncio.run(ensure_topics(s))
    models = min(MODELS, keys)

    progress(f"{name}: generating {keys} keys x {events_per_key} events ({args.features} features)")
    produced = envelopes(s.features_topic, keys, events_per_key, args.features, args.partitions,
                         seed=keys * 1000 + events_per_key)
    result.events_behind, result.partials = produced.records, produced.cells
    baselines = baseline_messages(s.baselines_topic, args.features, models)

    worker = WorkerProcess(env, workdir / f"{name}.log").start()
    assert worker.process is not None
    pid = worker.process.pid
    try:
        result.ready_s = worker.wait_ready(timeout=args.phase_timeout)
        progress(f"{name}: worker {pid} ready in {result.ready_s:.1f}s; publishing {len(baselines)} baselines")
        asyncio.run(produce(broker.bootstrap, baselines))
        wait_until("baselines consumed", lambda: worker.metric(
            "model_monitoring_records_consumed_total", topic=s.baselines_topic) >= len(baselines),
            args.phase_timeout, 0.3)
        # the baseline cache is filled by the same agent that counts them: give it a beat
        time.sleep(1.0)

        progress(f"{name}: producing {produced.records} records in {len(produced.messages)} envelopes")
        t0 = time.monotonic()
        asyncio.run(produce(broker.bootstrap, produced.messages))
        produced.messages.clear()
        ingest_timeout = args.phase_timeout + produced.records / 2000
        wait_until("records consumed", lambda: worker.metric(
            "model_monitoring_records_consumed_total", topic=s.features_topic) >= produced.records,
            ingest_timeout, 0.5)
        # the whole ingest, not only the input: the records the worker forwards to their
        # predictionId's partition and the detectors' minute buckets too; else the run's figures
        # hold the tail of the ingest (a third of the worker's CPU at 1,000 keys)
        drained = [s.features_topic]
        if s.processing_guarantee == "at_least_once":  # exactly once, those end with commit markers
            drained += [s.repartition_topic(s.features_topic), s.detector_buckets_topic]
        wait_until("ingest lag 0", lambda: asyncio.run(consumed(broker.bootstrap, s.app_id, drained)),
                   args.phase_timeout, 1.0)
        result.ingest_s = time.monotonic() - t0
        progress(f"{name}: ingested in {result.ingest_s:.1f}s ({produced.records / result.ingest_s:,.0f} records/s);"
                 f" {produced.cells} partials in the window; triggering")

        reference = Reference.read(broker.bootstrap, s) if args.reference else None
        base_id = f"bench-{keys}" + (f"-x{events_per_key}" if events_per_key != args.events_per_key else "")
        for round_no in range(1, args.rounds + 1):
            # the same window again: the same work (the incidents the first round opened go on)
            job_run_id = base_id if round_no == 1 else f"{base_id}-r{round_no}"
            cpu0 = proc_cpu_s(pid)
            if args.profile is not None and round_no == 1:
                args.profile.mkdir(parents=True, exist_ok=True)
                with PySpyRecord(pid, args.profile / f"{job_run_id}.{args.profile_format}"):
                    seconds, doc, kind = asyncio.run(trigger_and_wait(s, job_run_id, args.run_timeout))
            else:
                seconds, doc, kind = asyncio.run(trigger_and_wait(s, job_run_id, args.run_timeout))
            cpu_s = proc_cpu_s(pid) - cpu0
            result.worker_rss_mb = proc_rss_mb(pid)
            if kind == "timeout":
                result.status = kind
                progress(f"{name}: no completion after {seconds:.0f}s; where the worker is:")
                print(py_spy_dump(pid), file=sys.stderr, flush=True)
                break
            result.rounds.append((seconds, cpu_s, doc, log_phases_after(worker, job_run_id)))
            progress(f"{name}: round {round_no}: {kind} in {seconds:.2f}s; completion "
                     f"{json.dumps(doc)[:300] if doc else None}")
            if kind != "completed":
                result.status = kind
                break
            if reference is not None:  # right after the round, while the worker idles
                result.pure.append(reference.measure(name))
        else:
            result.status = "completed"
        if result.rounds:  # the median round's figures (by seconds)
            seconds, result.cpu_s, doc, result.phases = sorted(result.rounds, key=lambda r: r[0])[
                (len(result.rounds) - 1) // 2]
            result.seconds, result.completion = seconds, doc
            result.duration_ms = int(doc["durationMs"]) if doc and "durationMs" in doc else None
            progress(f"{name}: {result.status}; seconds per round "
                     f"{[round(r[0], 2) for r in result.rounds]}, median {seconds:.2f}s; {result.phases}")
        if result.pure:
            result.pure_s = sorted(p.seconds for p in result.pure)[(len(result.pure) - 1) // 2]
            ratios = sorted(result.pure_ratio_rounds)
            result.pure_ratio = ratios[(len(ratios) - 1) // 2]
            first = result.rounds[0][2] or {}
            result.pure_matches = all(result.pure[0].counts.get(f, 0) == first.get(f) for f in COUNT_FIELDS)
            if not result.pure_matches:
                progress(f"{name}: THE REFERENCE DID OTHER WORK: its counts {result.pure[0].counts} against "
                         f"the first round's completion {first}")
    finally:
        worker.stop()
        process = getattr(broker, "process", None)  # both engines are BrokerProcess; the Protocol has no pid
        if process is not None:
            result.broker_rss_mb = proc_rss_mb(process.pid)
        if not args.keep:
            shutil.rmtree(workdir / name, ignore_errors=True)


class Reference:
    """The run's own work without broker or faust (`bench/weekly_pure.py`), on the partials and
    baselines the worker stored, read back from their changelogs once (not timed)."""

    def __init__(self, s: Settings, partials: dict[bytes, bytes], baselines: dict[bytes, bytes]) -> None:
        self.s, self.partials, self.baselines = s, partials, baselines
        self.window = window_for(END_MS, s.window_ms, s.bucket_ms)

    @classmethod
    def read(cls, bootstrap: str, s: Settings) -> Reference:
        partials = asyncio.run(latest_values(bootstrap, changelog_topic(s, "partials")))
        baselines = asyncio.run(latest_values(bootstrap, changelog_topic(s, "baselines")))
        return cls(s, partials, baselines)

    def measure(self, name: str) -> PureRun:
        pure = pure_run(self.partials, self.baselines, self.s, *self.window)
        progress(f"{name}: reference (no broker, no faust): {pure.seconds:.2f} s CPU for {pure.keys} keys "
                 f"({', '.join(f'{k} {v:.2f}' for k, v in pure.stages.items())}); {pure.events:,} events, "
                 f"{pure.event_bytes / 1e6:.0f} MB; {pure.counts}")
        return pure


# ------------------------------------------------------------------ output
def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[Measurement]) -> str:
    head = (f"{'keys':>6} {'ev/key':>6} {'events behind':>13} {'partials':>8} {'status':>9} "
            f"{'seconds':>8} {'durationMs':>10} {'keys/s':>8} | {'->1st eval':>10} {'eval span':>9} "
            f"{'->done':>7} {'eval s':>7} {'cpu s':>6} {'checked':>8} {'ingest s':>8} {'broker MB':>9} | "
            f"{'ref s':>6} {'ratio':>6}")
    lines = [head, "-" * len(head)]
    for r in results:
        p = r.phases
        lines.append(
            f"{r.keys:>6} {r.events_per_key:>6} {r.events_behind:>13,} {r.partials:>8,} {r.status:>9} "
            f"{fmt(r.seconds, '.2f'):>8} {fmt(r.duration_ms, 'd'):>10} {fmt(r.keys_per_s, '.0f'):>8} | "
            f"{fmt(p.get('to_first_eval_s'), '.2f'):>10} {fmt(p.get('eval_span_s'), '.2f'):>9} "
            f"{fmt(p.get('last_eval_to_done_s'), '.2f'):>7} {fmt(p.get('eval_sum_s'), '.2f'):>7} "
            f"{r.cpu_s:>6.1f} {fmt((r.completion or {}).get('driftChecked'), 'd'):>8} {r.ingest_s:>8.1f} "
            f"{r.broker_rss_mb:>9.0f} | {fmt(r.pure_s, '.2f'):>6} {fmt(r.pure_ratio, '.3f'):>6}"
            + ("" if r.pure_matches is not False else "  (the reference's counts differ!)"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000,5000", help="comma-separated numbers of (tenant, model) keys")
    ap.add_argument("--features", type=int, default=25, help="features per record (80%% numeric, 20%% categorical)")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--events-per-key", type=int, default=10)
    ap.add_argument("--heavy-keys", type=int, default=1000, help="the size measured again with more events (0: none)")
    ap.add_argument("--heavy-factor", type=int, default=10, help="events per key multiplier of that measurement")
    ap.add_argument("--rounds", type=int, default=1,
                    help="runs per measurement on the same data (new jobRunIds); the median round is shown")
    ap.add_argument("--phase-timeout", type=float, default=180.0, help="seconds per set-up phase")
    ap.add_argument("--run-timeout", type=float, default=600.0, help="seconds from trigger to completion")
    ap.add_argument("--engine", choices=(*ENGINES, "both"), default="tansu",
                    help="the broker: the embedded Tansu (default), Apache Kafka, or both in turn")
    ap.add_argument("--broker", choices=("per-measurement", "shared"), default="per-measurement",
                    help="the memory-only broker keeps every changelog write (GBs at 5,000 keys): "
                         "a fresh one per measurement keeps them independent")
    ap.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="a service setting of the worker, e.g. MODEL_MONITORING_PROCESSING_GUARANTEE=exactly_once")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep data dirs (logs are always kept in the workdir)")
    ap.add_argument("--no-reference", dest="reference", action="store_false",
                    help="skip the reference (the run's own work without broker or faust, after each round)")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="py-spy record the worker from trigger to completion, one file per measurement in DIR")
    ap.add_argument("--profile-format", choices=("svg", "txt"), default="svg",
                    help="a flame graph, or folded stacks (txt) to read in a terminal")
    args = ap.parse_args(argv)

    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    plan = [(k, args.events_per_key) for k in sizes]
    if args.heavy_keys:
        plan.append((args.heavy_keys, args.events_per_key * args.heavy_factor))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="weekly-run-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    progress(f"workdir {workdir} (worker and broker logs)")

    engines = ENGINES if args.engine == "both" else (args.engine,)
    by_engine: dict[str, list[Measurement]] = {}
    for engine in engines:
        try:
            by_engine[engine] = run_plan(engine, plan, workdir, args)
        except BrokerUnavailable as exc:
            progress(f"{engine}: no broker: {exc}")
            return 2

    for engine, results in by_engine.items():
        print(f"weekly run on {BROKER_NAMES[engine]}: {args.features} features, {args.partitions} partitions, "
              f"{MODELS} models per tenant, window {WINDOW_DAYS} days before {format_timestamp(END_MS)}, "
              f"{'a fresh broker per measurement' if args.broker == 'per-measurement' else 'one broker for all measurements'}")
        print(table(results))
    summaries = {engine: summary(results) for engine, results in by_engine.items()}
    if len(summaries) > 1:
        print(side_by_side(by_engine))
        print(json.dumps({"engines": summaries}))
    else:
        print(json.dumps(next(iter(summaries.values()))))
    return 0 if all(r.status == "completed" for rs in by_engine.values() for r in rs) else 1


BROKER_NAMES = {"tansu": "the embedded broker", "kafka": "Apache Kafka"}


def run_plan(engine: str, plan: list[tuple[int, int]], workdir: Path, args: argparse.Namespace
             ) -> list[Measurement]:
    """Every measurement of the plan on brokers of one engine, started and stopped here."""
    results: list[Measurement] = []
    broker: Broker | None = None
    try:
        for index, (keys, epk) in enumerate(plan):
            if broker is None or args.broker == "per-measurement":
                if broker is not None:
                    broker.stop()
                    if not args.keep:
                        shutil.rmtree(workdir / f"{engine}-{index - 1}", ignore_errors=True)
                broker = make_broker(engine, workdir / f"{engine}-{index}",
                                     log_path=workdir / f"broker-{engine}-{index}.log").start()
                progress(f"{engine} broker on {broker.bootstrap}")
            result = Measurement(keys, epk)
            results.append(result)
            try:
                measure(broker, workdir, result, args)
            except Exception as exc:  # noqa: BLE001 - report it and go on with the next size
                progress(f"{engine}: {keys} keys x {epk}: {type(exc).__name__}: {exc}")
                result.status = "error"
    finally:
        if broker is not None:
            broker.stop()
        if not args.keep:  # a Kafka broker's log on disk (Tansu writes none there)
            for index in range(len(plan)):
                shutil.rmtree(workdir / f"{engine}-{index}", ignore_errors=True)
    return results


def summary(results: list[Measurement]) -> dict[str, list[Any]]:
    return {
        "keys": [r.keys for r in results],
        "seconds": [round(r.seconds, 3) if r.seconds is not None else None for r in results],
        "events_behind": [r.events_behind for r in results],
        "duration_ms": [r.duration_ms for r in results],
        "events_per_key": [r.events_per_key for r in results],
        "partials": [r.partials for r in results],
        "status": [r.status for r in results],
        "seconds_rounds": [[round(x[0], 3) for x in r.rounds] for r in results],
        # the reference (bench/weekly_pure.py), measured after each round: its CPU seconds, and
        # reference seconds / run seconds (1.0: the run costs no more than its own evaluation)
        "reference_seconds": [round(r.pure_s, 3) if r.pure_s is not None else None for r in results],
        "reference_ratio": [round(r.pure_ratio, 3) if r.pure_ratio is not None else None for r in results],
        "reference_ratio_rounds": [[round(x, 3) for x in r.pure_ratio_rounds] for r in results],
        "reference_matches": [r.pure_matches for r in results],
    }


def side_by_side(by_engine: dict[str, list[Measurement]]) -> str:
    """Seconds from trigger to completion per measurement, one column per broker."""
    engines = list(by_engine)
    head = f"{'keys':>6} {'ev/key':>6} " + " ".join(f"{e + ' s':>10}" for e in engines)
    if len(engines) == 2:
        head += f" {engines[1] + '/' + engines[0]:>12}"
    lines = ["trigger -> completion, seconds:", head, "-" * len(head)]
    first = by_engine[engines[0]]
    for i, r in enumerate(first):
        seconds = [by_engine[e][i].seconds if i < len(by_engine[e]) else None for e in engines]
        line = f"{r.keys:>6} {r.events_per_key:>6} " + " ".join(f"{fmt(v, '.2f'):>10}" for v in seconds)
        if len(engines) == 2:
            a, b = seconds
            line += f" {fmt(b / a if a and b else None, '.2f'):>12}"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
