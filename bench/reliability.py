"""Reliability harness (issues 6 and 10): crashes, rebalances, bad input, duplicates, a broker
stall, attacks on the HTTP route and tenant isolation, as figures; on Apache Kafka also the
broker killed and restarted on its log, and compaction.

    .venv/bin/python bench/reliability.py [--engine tansu|kafka] [--quick] [--only NAME[,NAME]] [--keep DIR]

Starts one broker of the engine on a free 127.0.0.1 port for the whole run: `tansu` (default)
the bundled embedded broker, which keeps data in memory only and is never restarted; `kafka`
Apache Kafka (commands/kafka_broker.py, log on disk), which the durable scenarios kill and start
again on the same log (they are left out on Tansu: it keeps no log and never compacts). Runs
each scenario of bench/scenarios/ against its own app id and topic prefix with workers started
and stopped by PID, and prints one table, then one JSON line: {"engine", "scenarios": [{"name",
"pass", ...}], "all_pass": ...}. Progress goes to stderr. Exit code 0 iff every scenario passes.
`--quick` runs the short variants (the ones tests/integration/test_reliability_quick.py runs).

Columns: `in` the distinct input records (a record sent twice is one record; envelope records
one by one) — for the HTTP row, the requests; `accounted` the records counted in the final state
(predictions in histograms, outcomes in error sums) plus the dead letters (distinct source
positions) — for the HTTP row, the requests answered with the right status; `ev.exp` the
events the offline oracle expects of the scenario's runs (drift + degraded + snapshot + one
completion per run), `ev.pub` the distinct ones published, `dups` the copies published more
than once. `RELIABILITY_WORKER_LOG_LEVEL=info` makes the workers' logs (kept with --keep)
say more."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repo root holds bench/ and tests/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scenarios import DURABLE_NAMES, NAMES, names_for, run_scenario  # noqa: E402
from bench.scenarios.common import Result, progress  # noqa: E402
from model_monitoring.commands.broker import ENGINES, make_broker  # noqa: E402
from model_monitoring.commands.kafka_broker import BrokerUnavailable  # noqa: E402

COLUMNS = (("scenario", 19), ("load", 33), ("faults injected", 60), ("in", 8), ("accounted", 9),
           ("ev.exp", 6), ("ev.pub", 6), ("dups", 4), ("result", 6))


def table(results: list[Result]) -> str:
    def row(cells: list[object]) -> str:
        return "  ".join(str(c)[:w].ljust(w) if i < 3 else str(c).rjust(w)
                         for i, (c, (_, w)) in enumerate(zip(cells, COLUMNS, strict=False)))

    lines = [row([name for name, _ in COLUMNS]), row(["-" * w for _, w in COLUMNS])]
    for r in results:
        runs = r.events_expected or r.events_published
        lines.append(row([r.name, r.load, r.faults, f"{r.messages_in:,}", f"{r.accounted:,}",
                          r.events_expected if runs else "-", r.events_published if runs else "-",
                          r.duplicates, "PASS" if r.passed else "FAIL"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    everything = NAMES + DURABLE_NAMES
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=ENGINES, default="tansu",
                        help="the broker: the embedded Tansu (default) or Apache Kafka")
    parser.add_argument("--quick", action="store_true", help="the short variants")
    parser.add_argument("--only", help="comma-separated scenario names: " + ", ".join(everything)
                        + f" (the last {len(DURABLE_NAMES)} on --engine kafka only)")
    parser.add_argument("--keep", type=Path, help="keep worker logs and data under this dir")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(everything)
    unknown = set(names) - set(everything)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {', '.join(everything)}")
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="mm-reliability-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    broker = make_broker(args.engine, workdir / "broker", log_path=workdir / f"{args.engine}.log")
    available = names_for(broker)
    skipped = [n for n in names if n not in available]
    names = [n for n in names if n in available]
    for name in skipped:
        progress(f"{name}: skipped, {args.engine} keeps no log (--engine kafka)")
    results: list[Result] = []
    try:
        try:
            broker.start()
        except BrokerUnavailable as exc:
            progress(f"no broker: {exc}")
            return 2
        progress(f"{args.engine} broker on {broker.bootstrap}; work dir {workdir}")
        for name in names:
            results.append(run_scenario(name, broker, workdir, args.quick))
    finally:
        broker.stop()
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    all_pass = bool(results) and all(r.passed for r in results)
    progress(f"done in {time.monotonic() - started:.0f}s")
    print(table(results))
    print(json.dumps({"engine": args.engine, "variant": "quick" if args.quick else "full",
                      "scenarios": [r.to_json() for r in results], "all_pass": all_pass,
                      **({"skipped": skipped} if skipped else {})}))
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
