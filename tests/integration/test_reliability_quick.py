"""The quick variants of the reliability scenarios (bench/reliability.py --quick), one test each
(`scenario_broker`: on Tansu each on a broker of its own, since its group coordinator slows down
with every message it holds; on Kafka the session's): crash during ingest and during a run, a
rebalance, duplicates, bad input, a broker stall, attacks on the HTTP route and tenant
isolation; on Apache Kafka, each on a Kafka of its own,
(MM_TEST_BROKER=kafka) also the broker killed mid-ingest and mid-run, and compaction. The full
variants run only in the script."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.scenarios import DURABLE_NAMES, NAMES, run_scenario
from model_monitoring.commands.broker import Broker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

# decided before the broker fixture starts one: the embedded broker keeps no log to restart on
# and never compacts, so these scenarios have nothing to show there
NOT_DURABLE = pytest.mark.skipif(os.environ.get("MM_TEST_BROKER", "tansu") != "kafka",
                                 reason="needs a broker that keeps its log: MM_TEST_BROKER=kafka")


def check(name: str, broker: Broker, tmp_path: Path) -> None:
    result = run_scenario(name, broker, tmp_path, quick=True)
    assert result.passed, f"{name}: " + "\n".join(result.problems)
    assert result.messages_in > 0 and result.accounted == result.messages_in
    assert result.duplicates == 0
    assert result.events_published == result.events_expected


@pytest.mark.parametrize("name", NAMES)
def test_quick_scenario(name: str, scenario_broker: Broker, tmp_path: Path) -> None:
    check(name, scenario_broker, tmp_path)


@NOT_DURABLE
@pytest.mark.timeout(480)  # Kafka's restarts (~10 s each) and its log cleaner's rounds
@pytest.mark.parametrize("name", DURABLE_NAMES)
def test_quick_durable_scenario(name: str, own_broker: Broker, tmp_path: Path) -> None:
    check(name, own_broker, tmp_path)
