"""`model-monitoring demo`, the README's first command (what it reads back and prints:
commands/demo_report.py).

The demo runs the whole job on the embedded default: the bundled broker, a worker, baselines
built from a reference sample, a clean week then three weeks of traffic with one drift and one
accuracy drop injected in the first two (the clean week is the continuous detectors' history:
they alert on the breaks within hours of event time, before the first weekly trigger), and one
weekly run per week (the last over the HTTP route with a
service token). It prints what each run published: the incidents opened in week 1, going on in
week 2 and resolved in week 3 (an accuracy drop's may go on a week longer: it is judged on the
outcomes that arrive in a week). Then the outcome clock: a sales model whose deals close 2–120
days after the prediction, degraded from week 12 (only the outcome-arrival view can see it),
with its calibration, and a prediction-score drift that pages the week the scores move, weeks
before their labels. It stops every process it started, also on Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from model_monitoring.commands.broker import EmbeddedBroker, free_port
from model_monitoring.commands.demo_report import (
    checks_table,
    early_alerts,
    lifecycle,
    lifecycle_line,
    print_run,
    run_events,
    wait_for_run,
)
from model_monitoring.commands.harness import WorkerProcess, produce, service_env, until_ingested
from model_monitoring.commands.simulate import (
    DAY_MS,
    Message,
    SalesConfig,
    Scenario,
    StreamConfig,
    generate,
    generate_sales,
    reference_records,
)
from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import Settings, load_settings
from model_monitoring.streams.tokens import mint_token
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.baseline_build import build_baseline

DEMO_SCENARIO = Scenario(numeric_shift=("acme:risk-scoring",), accuracy_drop=("globex:churn",),
                         small_tenants=("initech",), duplicate_rate=0.01,
                         early_outcome_rate=0.02, malformed_rate=0.002, weeks=(1, 2))


def demo_baselines(models: Iterable[str], version: str = "3", n: int = 20_000) -> list[Baseline]:
    return [build_baseline(reference_records(m, n=n, seed=101), model_id=m, model_version=version,
                           tenant_id=None, task="classification") for m in models]


def progress(done: int, total: int, started: float, width: int = 32) -> None:
    share = done / total if total else 1.0
    bar = "#" * int(share * width)
    rate = done / max(time.monotonic() - started, 1e-6)
    sys.stderr.write(f"\r  streaming [{bar:<{width}}] {done:>7}/{total} messages  {rate:,.0f}/s")
    sys.stderr.flush()
    if done >= total:
        sys.stderr.write("\n")


async def stream_messages(bootstrap: str, s: Settings, messages: list[Message],
                          rate: float | None = None) -> None:
    topic_of = {"features": s.features_topic, "outcomes": s.outcomes_topic}
    started = time.monotonic()
    chunk = 2000
    for i in range(0, len(messages), chunk):
        part = messages[i:i + chunk]
        await produce(bootstrap, [(topic_of[m.kind], m.key, m.value) for m in part])
        progress(min(i + chunk, len(messages)), len(messages), started)
        if rate:
            ahead = (i + len(part)) / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)


BACKFILL_IDLE_MINUTES = 200 * 24 * 60  # longer than the replayed history (20 weeks of sales)


def trigger_week(bootstrap: str, s: Settings, job_run_id: str, window_end_ms: int) -> None:
    doc = {"job": "model-monitoring", "jobRunId": job_run_id,
           "metadata": {"windowEnd": format_timestamp(window_end_ms), "tenantIds": list(PART_ONE_TENANTS)}}
    asyncio.run(produce(bootstrap, [(s.trigger_topic, job_run_id.encode(), orjson.dumps(doc))]))


def run_demo(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="model-monitoring-demo-"))
    broker = None if args.bootstrap else EmbeddedBroker(port=free_port(), log_path=workdir / "broker.log")
    worker: WorkerProcess | None = None

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        if broker is not None:
            broker.start()
            print(f"1. embedded broker (Tansu, memory only) on {broker.bootstrap}")
        bootstrap = args.bootstrap or broker.bootstrap  # type: ignore[union-attr]
        secret = os.urandom(32).hex()
        env = service_env(bootstrap, workdir / "data", app_id="model-monitoring-demo",
                          extra={"MODEL_MONITORING_JWT_SECRET": secret,
                                 "MODEL_MONITORING_JWT_ISSUER": "demo-platform",
                                 "MODEL_MONITORING_JWT_AUDIENCE": "model-monitoring",
                                 "MODEL_MONITORING_PARTITIONS": str(args.partitions),
                                 "MODEL_MONITORING_CRON_ENABLED": "false",
                                 # weeks of history replayed in seconds: the partitions run apart
                                 # in event time, and one behind by more than the idle window
                                 # would stop holding the detectors back, its minutes then late
                                 # (README: Continuous detection, backfills)
                                 "MODEL_MONITORING_CONTINUOUS_IDLE_MINUTES": str(BACKFILL_IDLE_MINUTES)})
        s = load_settings(env)
        asyncio.run(ensure_topics(s))
        worker = WorkerProcess(env, workdir / "worker.log").start()
        ready_s = worker.wait_ready()
        print(f"2. worker up in {ready_s:.1f}s (pid {worker.process.pid}, web http://127.0.0.1:{worker.web_port}, "  # type: ignore[union-attr]
              f"log {worker.log_path})")
        models = ("risk-scoring", "churn")
        baselines = demo_baselines(models)
        asyncio.run(produce(bootstrap, [(s.baselines_topic, b.key().encode(), orjson.dumps(b.to_dict()))
                                        for b in baselines]))
        print(f"3. baselines registered: {', '.join(b.key() for b in baselines)} "
              f"(from {baselines[0].sample_size:,} reference records each)")
        today = (int(time.time() * 1000) // DAY_MS) * DAY_MS
        sales = stream_sales_history(bootstrap, s, today, args.seed)
        # a clean week first (weeks counted back: 3), so that the breaks happen mid-stream
        cfg = StreamConfig(models=models, events_per_key=args.events_per_key * 4 // 3, days=28, end_ms=today,
                           seed=args.seed, scenario=DEMO_SCENARIO)
        messages = list(generate(cfg))
        print(f"4. a clean week, then three weeks of traffic for tenants acme, globex, initech: {len(messages):,} messages "
              "(injected in weeks 1 and 2, gone in week 3: acme:risk-scoring `pipeline_value` ×3 and a "
              "globex:churn accuracy drop; initech too small to judge; plus duplicates, early outcomes, "
              "malformed messages)")
        asyncio.run(stream_messages(bootstrap, s, messages))
        asyncio.run(until_ingested(s, 600.0))
        early = asyncio.run(early_alerts(bootstrap, s))
        print(f"   early alerts of the continuous detectors, before any weekly trigger: {len(early)} "
              "(the weekly runs then report their incidents `ongoing`)")
        for e in early:
            print(f"     {e['detectedAt']} {e['tenantId']}:{e['modelId']} v{e['modelVersion']} "
                  f"{e.get('feature') or e['metric']} {e['metric']}={e['value']:.3f} "
                  f"(threshold {e['threshold']:.3f}) detector={e['detector']} changeAt={e['changeAt']} "
                  f"{e['incidentStatus']}")
        print("5. one weekly run per week (an alert pages: an incident opened or escalated; "
              "ongoing is an update)")
        weeks: list[tuple[str, dict[str, list[dict[str, Any]]]]] = []
        for week, end in ((1, today - 14 * DAY_MS), (2, today - 7 * DAY_MS)):
            job_run_id = f"demo-week-{week}-{today // DAY_MS}"
            trigger_week(bootstrap, s, job_run_id, end)
            result = asyncio.run(wait_for_run(bootstrap, s, job_run_id))
            events = run_events(bootstrap, s, job_run_id)
            if week == 1:
                print(f"\nChecks of week 1 (all segments; per-segment snapshots are on {s.snapshot_topic}):")
                print(checks_table(events["snapshot"]))
            print_run(week, job_run_id, f"trigger on {s.trigger_topic} (windowEnd {format_timestamp(end)})", events)
            weeks.append((job_run_id, events))
        token = mint_token(secret, issuer="demo-platform", audience="model-monitoring")
        # the route answers when the run has ended (200), or 202 when its wait (60 s) runs out
        status, body = worker.post("/api/v1/ml/model-monitoring/run", orjson.dumps({"tenantIds": list(PART_ONE_TENANTS)}),
                                   headers={"Authorization": f"Bearer {token}"}, timeout=90.0)
        if status not in (200, 202):
            print(f"error: the run was refused or failed: {status} {body.decode()}", file=sys.stderr)
            return 1
        job_run_id = orjson.loads(body)["jobRunId"]
        result = asyncio.run(wait_for_run(bootstrap, s, job_run_id))
        events = run_events(bootstrap, s, job_run_id)
        print_run(3, job_run_id, f"POST /api/v1/ml/model-monitoring/run -> {status}", events)
        weeks.append((job_run_id, events))
        print("\nIncident lifecycle:")
        for line in lifecycle(weeks, DEMO_SCENARIO):
            print("  " + line)
        print("  (performance is judged on the outcomes that arrived in each week: outcomes come up to 5 days "
              "after their predictions, so an accuracy drop's incident can outlast the drop by a week)")
        outcome_clock_demo(bootstrap, s, today, sales)
        first, last = weeks[0][1], weeks[-1][1]
        for title, sample in (("an opened drift event", first["drift"][:1]),
                              ("a resolved drift event", last["resolved"][:1])):
            if sample:
                print(f"\n{title} (JSON as published):\n  " + orjson.dumps(sample[0]).decode())
        print(f"\n{result['topic']} (week 3):")
        print("  " + orjson.dumps({k: v for k, v in result.items() if k != "topic"}).decode())
        logline = next((d for d in reversed(worker.json_lines())  # week 3's, not a later run's
                        if d.get("message", "").startswith("model-monitoring ")
                        and d.get("jobRunId") == result.get("jobRunId")), None)
        if logline:
            print("worker log line (week 3):\n  " + orjson.dumps(logline).decode())
        print(f"\nWhere to look next:\n  metrics   http://127.0.0.1:{worker.web_port}/metrics (run the demo with --keep-running to keep it up)\n"
              f"  topics    {s.drift_topic}, {s.degraded_topic}, {s.drift_resolved_topic}, "
              f"{s.performance_recovered_topic}, {s.snapshot_topic}, {s.completed_topic}\n"
              f"  runbook   docs/RUNBOOK.md\n  worker log {worker.log_path}")
        if args.keep_running:
            print("\n--keep-running: the broker and worker stay up; Ctrl-C stops them.")
            while True:
                time.sleep(3600)
        return 0 if result["topic"] == s.completed_topic else 1
    except KeyboardInterrupt:
        print("\ninterrupted: stopping what the demo started", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if worker is not None:
            worker.stop()
        if broker is not None:
            broker.stop()
        if not args.keep_files:
            shutil.rmtree(workdir, ignore_errors=True)


PART_ONE_TENANTS = ("acme", "globex", "initech")


def stream_sales_history(bootstrap: str, s: Settings, today: int, seed: int) -> tuple[SalesConfig, int]:
    """The sales model's 20 weeks go in first: the stream's event-time mark then moves through
    them in order (history streamed after today's traffic would be older than the retention)."""
    cfg = SalesConfig(end_ms=today, seed=seed)
    baseline = sales_baseline(cfg)
    asyncio.run(produce(bootstrap, [(s.baselines_topic, baseline.key().encode(), orjson.dumps(baseline.to_dict()))]))
    messages = list(generate_sales(cfg))
    print(f"   (and, for part 6, 20 weeks of a sales model's traffic: {len(messages):,} messages)")
    asyncio.run(stream_messages(bootstrap, s, messages))
    return cfg, len(messages)


def outcome_clock_demo(bootstrap: str, s: Settings, today: int, sales: tuple[SalesConfig, int]) -> None:
    """Part two: a sales model whose outcomes come weeks to months after its predictions."""
    cfg, n_messages = sales
    print(f"\n6. the outcome clock: {cfg.tenant}:{cfg.model} scores sales deals; a deal closes 2-120 days after "
          f"its prediction (median ~{cfg.median_lag_days:.0f} days). 20 weeks of traffic, {n_messages:,} messages: the "
          "model goes wrong from week 12, its scores move in week 20")
    for weeks_back in (1, 0):
        end = today - weeks_back * 7 * DAY_MS
        job_run_id = f"demo-sales-{weeks_back}-{today // DAY_MS}"
        doc = {"job": "model-monitoring", "jobRunId": job_run_id,
               "metadata": {"windowEnd": format_timestamp(end), "tenantIds": [cfg.tenant]}}
        asyncio.run(produce(bootstrap, [(s.trigger_topic, job_run_id.encode(), orjson.dumps(doc))]))
        asyncio.run(wait_for_run(bootstrap, s, job_run_id))
        events = run_events(bootstrap, s, job_run_id)
        snap = next(d for d in events["snapshot"] if d["segment"] is None)
        views = snap.get("performanceViews") or {}
        print(f"\nWeek {20 - weeks_back} (window ending {format_timestamp(end)}), jobRunId={job_run_id}:")
        for basis in ("prediction", "outcome"):
            brier = (views.get(basis) or {}).get("brier") or {}
            value = "-" if brier.get("value") is None else f"{brier['value']:.4f}"
            print(f"  {basis + ' view':<16} brier {value:>7} on {brier.get('sampleSize', 0):>5} outcomes: "
                  f"{brier.get('status')}")
        expected = snap.get("expectedBrier")
        print(f"  expected Brier if calibrated, E[p(1-p)] of the window's predictions: "
              f"{expected:.4f} (realized, outcome view: {views['outcome']['brier']['value']:.4f})")
        calibration = snap.get("calibration")
        if calibration:
            print(f"  calibration: ECE {calibration['ece']:.4f} (a calibrated model would show "
                  f"{calibration['eceNullMean']:.4f} at this n); Brier {calibration['brier']:.4f} = "
                  f"REL {calibration['reliability']:.4f} - RES {calibration['resolution']:.4f} + "
                  f"UNC {calibration['uncertainty']:.4f} + WBV {calibration['withinBinVariance']:.4f} - "
                  f"WBC {calibration['withinBinCovariance']:.4f}")
        labels = snap["labels"]
        print(f"  labels: {labels['coverage']:.1%} of the window's predictions labelled; lag p50 "
              f"{labels['lagP50Hours'] / 24:.0f} d, p90 {labels['lagP90Hours'] / 24:.0f} d; "
              f"{labels['expiredEarlyOutcomes']} outcomes later than the join TTL (unmatched)")
        score = snap.get("prediction") or {}
        print(f"  prediction score PSI {score.get('value') or 0:.4f}: {score.get('status')}")
        for kind in ("drift", "degraded"):
            for e in events[kind]:
                print(lifecycle_line(kind, e) + (f"  [{e.get('kind')}]" if kind == "drift" else
                                                 f"  [windowBasis {e.get('windowBasis')}]"))
    print("\n  The prediction-window view cannot judge this week's deals for weeks; the outcome-arrival "
          "view catches the model that went wrong, and the score drift pages the week it happens.")


def sales_baseline(cfg: SalesConfig, n: int = 20_000) -> Baseline:
    return build_baseline(reference_records(cfg.model, n=n, seed=101, version=cfg.version), model_id=cfg.model,
                          model_version=cfg.version, tenant_id=None, task="classification")


def add_demo_parsers(sub: Any) -> None:
    p = sub.add_parser("demo", help="the whole job end to end on the embedded broker")
    p.add_argument("--bootstrap", help="use this Kafka instead of starting the embedded broker")
    p.add_argument("--events-per-key", type=int, default=9000,
                   help="over the three weeks (and a third more in the clean week before them)")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--keep-running", action="store_true")
    p.add_argument("--keep-files", action="store_true")
    p.set_defaults(func=run_demo)
