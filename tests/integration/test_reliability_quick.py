"""The quick variants of the reliability scenarios (bench/reliability.py --quick), one test each,
each on a broker of its own (the embedded broker keeps every message in memory and its group
coordinator slows down with them; a scenario's timing must not depend on what ran before): crash during ingest and during a run, a rebalance, duplicates, bad
input, a broker stall, attacks on the HTTP route and tenant isolation. The full variants run
only in the script."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scenarios import NAMES, run_scenario
from model_monitoring.commands.broker import EmbeddedBroker, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.mark.parametrize("name", NAMES)
def test_quick_scenario(name: str, tmp_path: Path) -> None:
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log").start()
    try:
        result = run_scenario(name, broker, tmp_path, quick=True)
    finally:
        broker.stop()
    assert result.passed, f"{name}: " + "\n".join(result.problems)
    assert result.messages_in > 0 and result.accounted == result.messages_in
    assert result.duplicates == 0
    assert result.events_published == result.events_expected
