"""The `model-monitoring` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson
from pydantic import ValidationError

from model_monitoring.streams.settings import Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "bootstrap", None):
        overrides["kafka_bootstrap_servers"] = args.bootstrap
    return load_settings(os.environ, Path(args.config) if getattr(args, "config", None) else None, **overrides)


def cmd_broker(args: argparse.Namespace) -> int:
    if args.engine == "kafka":
        from model_monitoring.commands.kafka_broker import run_kafka_foreground

        return run_kafka_foreground(args.port, Path(args.data_dir))
    from model_monitoring.commands.broker import run_foreground

    return run_foreground(args.port)


def cmd_worker(args: argparse.Namespace) -> int:
    from model_monitoring.commands.worker import run_worker
    from model_monitoring.streams.admin import TopicLayoutError

    try:
        return run_worker(_settings(args))
    except (TopicLayoutError, ValueError) as exc:  # configuration the worker cannot run with
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_trigger(args: argparse.Namespace) -> int:
    """Publish a `workflow.job.trigger` message (what the workflow service sends)."""
    from aiokafka import AIOKafkaProducer

    from model_monitoring.agents.run import trigger_message

    s = _settings(args)
    job_run_id = args.job_run_id or f"cli-{os.urandom(8).hex()}"

    async def send() -> None:
        if args.after_ingest is not None:
            from model_monitoring.commands.harness import until_ingested

            await until_ingested(s, args.after_ingest)
        producer = AIOKafkaProducer(**s.kafka_client_kwargs())
        await producer.start()
        try:
            await producer.send_and_wait(s.trigger_topic, trigger_message(
                job_run_id, args.tenant or None, "cli", args.window_end), key=job_run_id.encode())
        finally:
            await producer.stop()

    try:
        asyncio.run(send())
    except TimeoutError as exc:
        print(f"model-monitoring trigger: not sent: {exc}", file=sys.stderr)
        return 1
    print(job_run_id)
    return 0


def cmd_baseline_publish(args: argparse.Namespace) -> int:
    """Validate a baseline file and publish it, keyed `{tenant or *}:{model}:{version}`."""
    from aiokafka import AIOKafkaProducer

    from model_monitoring.commands.offline import load_baseline
    from model_monitoring.tables.baseline import BaselineError
    from model_monitoring.tables.records import InputError

    s = _settings(args)
    try:
        baseline = load_baseline(args.file)
    except (InputError, BaselineError, OSError) as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2

    async def send() -> None:
        producer = AIOKafkaProducer(**s.kafka_client_kwargs())
        await producer.start()
        try:
            await producer.send_and_wait(s.baselines_topic, orjson.dumps(baseline.to_dict()),
                                         key=baseline.key().encode())
        finally:
            await producer.stop()

    asyncio.run(send())
    print(f"published baseline {baseline.key()} to {s.baselines_topic}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Mint a service token for the HTTP route from the configured HS256 secret (for operators
    and the demo; production tokens come from the platform's identity provider)."""
    from model_monitoring.streams.tokens import mint_token

    s = _settings(args)
    if not s.jwt_secret:
        print("error: MODEL_MONITORING_JWT_SECRET is not set", file=sys.stderr)
        return 2
    print(mint_token(s.jwt_secret, issuer=s.jwt_issuer, audience=s.jwt_audience, scope=s.jwt_scope,
                     tenant_ids=args.tenant or None, ttl_seconds=args.ttl))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="model-monitoring", description=__doc__)
    parser.add_argument("--config", help="TOML or YAML config file (or MODEL_MONITORING_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("broker", help="run a broker in the foreground: the embedded one (Tansu, memory "
                                      "only; the default) or Apache Kafka (KRaft, log on disk)")
    p.add_argument("--engine", choices=("tansu", "kafka"), default="tansu",
                   help="kafka: Apache Kafka, fetched once with Maven, run with Java 17+")
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--data-dir", default="data/kafka", help="Kafka's log directory (--engine kafka)")
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("worker", help="run the stream-processing worker")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (or KAFKA_BOOTSTRAP_SERVERS)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("trigger", help="publish a workflow.job.trigger for model-monitoring")
    p.add_argument("--bootstrap")
    p.add_argument("--tenant", action="append", help="limit the run to this tenant (repeatable)")
    p.add_argument("--job-run-id")
    p.add_argument("--window-end", help="ISO-8601 end of the window (default: now)")
    p.add_argument("--after-ingest", type=float, nargs="?", const=300.0, metavar="SECONDS",
                   help="first wait (up to SECONDS, default 300) until the workers have taken in "
                        "every feature and outcome published so far, so that the run counts them")
    p.set_defaults(func=cmd_trigger)

    p = sub.add_parser("token", help="mint an HS256 service token for the HTTP route")
    p.add_argument("--tenant", action="append")
    p.add_argument("--ttl", type=int, default=300)
    p.set_defaults(func=cmd_token)

    from model_monitoring.commands.demo import add_demo_parsers
    from model_monitoring.commands.offline import add_offline_parsers
    from model_monitoring.commands.simulate_command import add_simulate_parser
    from model_monitoring.commands.tail import add_tail_parser

    add_offline_parsers(sub)
    add_demo_parsers(sub)
    add_simulate_parser(sub)
    add_tail_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
