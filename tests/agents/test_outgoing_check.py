"""The weekly run checks a sample of its own events against their schemas: the first of each
kind, then one in `outgoing_check_every`; one found off-contract is logged and published."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from model_monitoring.agents import snapshot
from tests.support.evaluator import evaluator_monitor


@pytest.mark.parametrize("every", [1, 10])
async def test_a_sample_of_the_outgoing_events_is_checked_and_every_one_is_published(
        every: int, caplog: pytest.LogCaptureFixture) -> None:
    monitor: Any = evaluator_monitor()
    monitor.settings = monitor.settings.model_copy(update={"outgoing_check_every": every})
    evaluator = snapshot.Evaluator(monitor)
    caplog.set_level(logging.ERROR, logger="model_monitoring.snapshot")
    for i in range(25):
        await evaluator.publish(monitor.topics.drift, "drift", b"k", {"not": "a drift event", "i": i})
    await evaluator.publish(monitor.topics.snapshot, "snapshot", b"k", {"not": "a snapshot"})
    logged = [r.getMessage() for r in caplog.records if "off-contract" in r.getMessage()]
    assert len(monitor.recorder.sent("drift")) == 25 and len(monitor.recorder.sent("snapshot")) == 1
    drift_checked = len(range(0, 25, every))
    assert len([m for m in logged if m.startswith("outgoing drift")]) == drift_checked
    assert len([m for m in logged if m.startswith("outgoing snapshot")]) == 1  # its kind's first
