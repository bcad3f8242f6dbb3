"""`model-monitoring simulate`: realistic traffic (commands/simulate.py) streamed to a broker,
or written to JSON Lines files for `check` and other tools, or a reference sample for `baseline
build`."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from model_monitoring.commands.demo import DEMO_SCENARIO, demo_baselines, sales_baseline, stream_messages
from model_monitoring.commands.harness import produce
from model_monitoring.commands.simulate import (
    DAY_MS,
    SalesConfig,
    Scenario,
    StreamConfig,
    generate,
    generate_sales,
    reference_records,
)
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.settings import Settings, load_settings


def run_simulate(args: argparse.Namespace) -> int:
    if args.reference:
        records = reference_records(args.models[0], n=args.reference_size, seed=args.seed)
        Path(args.reference).write_bytes(b"\n".join(orjson.dumps(r) for r in records) + b"\n")
        print(f"wrote {len(records):,} reference records of {args.models[0]} to {args.reference}")
        return 0
    s = load_settings(os.environ, None, **({"kafka_bootstrap_servers": args.bootstrap} if args.bootstrap else {}))
    end = args.end_ms or (int(time.time() * 1000) // DAY_MS) * DAY_MS
    if args.scenario == "sales":
        return _simulate_sales(args, s, end)
    scenario = {"none": Scenario(), "drift": Scenario(numeric_shift=(f"{args.tenants[0]}:{args.models[0]}",)),
                "accuracy": Scenario(accuracy_drop=(f"{args.tenants[0]}:{args.models[-1]}",)),
                "demo": DEMO_SCENARIO}[args.scenario]
    cfg = StreamConfig(tenants=tuple(args.tenants), models=tuple(args.models), events_per_key=args.events_per_key,
                       days=args.days, end_ms=end, seed=args.seed, scenario=scenario,
                       envelope_size=args.envelope_size)
    if args.output:  # files instead of a broker: for `check` and for other tools
        messages = list(generate(cfg))
        feats = [m.value for m in messages if m.kind == "features"]
        outs = [m.value for m in messages if m.kind == "outcomes"]
        Path(args.output).write_bytes(b"\n".join(feats) + b"\n")
        if args.outcomes_output:
            Path(args.outcomes_output).write_bytes(b"\n".join(outs) + b"\n")
        print(f"wrote {len(feats):,} inference records to {args.output}"
              + (f" and {len(outs):,} outcomes to {args.outcomes_output}" if args.outcomes_output else ""))
        return 0
    asyncio.run(ensure_topics(s))
    if args.baselines:
        asyncio.run(produce(s.kafka_bootstrap_servers, [
            (s.baselines_topic, b.key().encode(), orjson.dumps(b.to_dict())) for b in demo_baselines(args.models)]))
    messages = list(generate(cfg))
    asyncio.run(stream_messages(s.kafka_bootstrap_servers, s, messages, rate=args.rate))
    print(orjson.dumps({"messages": len(messages), "end": datetime.fromtimestamp(end / 1000, UTC).isoformat()}).decode())
    return 0


def _simulate_sales(args: argparse.Namespace, s: Settings, end: int) -> int:
    cfg = SalesConfig(end_ms=end, seed=args.seed)
    messages = list(generate_sales(cfg))
    if args.output:
        Path(args.output).write_bytes(b"\n".join(m.value for m in messages if m.kind == "features") + b"\n")
        if args.outcomes_output:
            Path(args.outcomes_output).write_bytes(b"\n".join(m.value for m in messages if m.kind == "outcomes") + b"\n")
        print(f"wrote the sales scenario ({len(messages):,} messages) to {args.output}")
        return 0
    asyncio.run(ensure_topics(s))
    if args.baselines:
        baseline = sales_baseline(cfg)
        asyncio.run(produce(s.kafka_bootstrap_servers, [(s.baselines_topic, baseline.key().encode(),
                                                         orjson.dumps(baseline.to_dict()))]))
    asyncio.run(stream_messages(s.kafka_bootstrap_servers, s, messages, rate=args.rate))
    print(orjson.dumps({"messages": len(messages), "end": datetime.fromtimestamp(end / 1000, UTC).isoformat()}).decode())
    return 0


def add_simulate_parser(sub: Any) -> None:
    p = sub.add_parser("simulate", help="stream realistic traffic to a broker")
    p.add_argument("--bootstrap")
    p.add_argument("--tenants", nargs="+", default=["acme", "globex", "initech"])
    p.add_argument("--models", nargs="+", default=["risk-scoring", "churn"])
    p.add_argument("--events-per-key", type=int, default=2000)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--end-ms", type=int)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rate", type=float, help="messages per second (default: as fast as possible)")
    p.add_argument("--envelope-size", type=int, default=1)
    p.add_argument("--scenario", choices=["none", "drift", "accuracy", "demo", "sales"], default="demo",
                   help="sales: one deal-scoring model over 20 weeks, outcomes 2-120 days late, degraded "
                        "from week 12, scores moving in week 20 (--days and --events-per-key are per day here)")
    p.add_argument("--baselines", action="store_true", help="also publish baselines for the models")
    p.add_argument("--reference", metavar="FILE",
                   help="only write a reference sample (JSON Lines with outcomes) of the first model")
    p.add_argument("--reference-size", type=int, default=20_000)
    p.add_argument("--output", metavar="FILE", help="write the inference records to a JSON Lines file instead")
    p.add_argument("--outcomes-output", metavar="FILE", help="with --output: also write the outcomes")
    p.set_defaults(func=run_simulate)
