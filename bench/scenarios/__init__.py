"""The reliability scenarios of `bench/reliability.py` (issue 6), one function each, in the
order the script runs them. `run_scenario` gives each a fresh work dir and row, bounds it, and
stops every process it started."""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import cast

from bench.scenarios.common import Result, ScenarioFailed, progress
from bench.scenarios.context import Context
from model_monitoring.commands.broker import Broker

Scenario = Callable[[Context], None]


MODULES = {"crash_during_ingest": "faults", "crash_during_run": "runs", "rebalance": "faults",
           "duplicates": "runs", "bad_input": "bad_input", "broker_stall": "faults",
           "http_attacks": "attacks", "tenant_isolation": "runs",
           "broker_killed_mid_ingest": "broker_kills", "broker_killed_mid_run": "broker_kills",
           "compaction": "compaction"}


def scenario_function(name: str) -> Scenario:
    module = importlib.import_module(f"bench.scenarios.{MODULES[name]}")
    return cast(Scenario, getattr(module, name))


NAMES = ("crash_during_ingest", "crash_during_run", "rebalance", "duplicates", "bad_input",
         "broker_stall", "http_attacks", "tenant_isolation")

# what only a durable broker can show (Apache Kafka): a broker restart on its log, compaction.
# The embedded broker keeps no log (a restart is a new, empty broker) and never compacts.
DURABLE_NAMES = ("broker_killed_mid_ingest", "broker_killed_mid_run", "compaction")


def names_for(broker: Broker) -> tuple[str, ...]:
    """The scenarios a broker can run, in order."""
    return NAMES + DURABLE_NAMES if broker.durable else NAMES


def describe(exc: BaseException) -> str:
    """One line for the row: the exception, and the known cause when the log names one."""
    text = str(exc)
    if "ConsistencyError" in text:
        return ("a restarted worker exited: faust ConsistencyError, persisted changelog offset "
                "above the reported highwater (the known Tansu end-offset issue, fixed in the "
                "project transport)")
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"[:300]


def run_scenario(name: str, broker: Broker, workdir: Path, quick: bool) -> Result:
    """Run one scenario; any exception is a failed row with its message, never a crash."""
    result = Result(name)
    ctx = Context(broker=broker, workdir=workdir / name, quick=quick, result=result)
    started = time.monotonic()
    progress(f"{name} ({'quick' if quick else 'full'}) ...")
    try:
        if name not in names_for(broker):
            raise ScenarioFailed(f"needs a broker that keeps its log (Apache Kafka), not {broker.engine}")
        scenario_function(name)(ctx)
    except Exception as exc:  # noqa: BLE001 - reported in the row
        result.problems.append(describe(exc))
        progress(traceback.format_exc())
    finally:
        ctx.cleanup()
    result.seconds = time.monotonic() - started
    result.passed = not result.problems
    progress(f"{name}: {'PASS' if result.passed else 'FAIL'} in {result.seconds:.0f}s"
             + "".join(f"\n    - {p}" for p in result.problems[:8]))
    return result
