"""The weekly run checks a sample of its own events against their schemas: the first of each
kind, then one in `outgoing_check_every`; one found off-contract is logged and published. The
events are encoded (and the sample checked) as the key is evaluated (`Evaluator.encode`) and sent
by `publish_report`, those a resumed evaluation found already published left out of both."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from model_monitoring.agents import snapshot
from model_monitoring.agents.published import identity
from model_monitoring.tables.evaluation_state import Evaluation
from model_monitoring.tables.run_evaluation import KeyReport
from tests.support.evaluator import evaluator_monitor


def off_contract() -> KeyReport:
    return KeyReport(events=[*(("drift", {"not": "a drift event", "eventId": f"e{i}"}) for i in range(25)),
                             ("snapshot", {"not": "a snapshot", "segment": "emea"})])


@pytest.mark.parametrize("every", [1, 10])
async def test_a_sample_of_the_outgoing_events_is_checked_and_every_one_is_published(
        every: int, caplog: pytest.LogCaptureFixture) -> None:
    monitor: Any = evaluator_monitor()
    monitor.settings = monitor.settings.model_copy(update={"outgoing_check_every": every})
    evaluator = snapshot.Evaluator(monitor)
    caplog.set_level(logging.ERROR, logger="model_monitoring.snapshot")
    report = off_contract()
    events = evaluator.encode(report)
    assert [(kind, orjson.loads(value)) for kind, _, value in events] == report.events
    await evaluator.publish_report(Evaluation("run-1", "acme:churn", 0, 1), events)
    logged = [r.getMessage() for r in caplog.records if "off-contract" in r.getMessage()]
    assert monitor.recorder.sent("drift") == report.of_kind("drift")
    assert monitor.recorder.sent("snapshot") == report.of_kind("snapshot")
    drift_checked = len(range(0, 25, every))
    assert len([m for m in logged if m.startswith("outgoing drift")]) == drift_checked
    assert len([m for m in logged if m.startswith("outgoing snapshot")]) == 1  # its kind's first


async def test_events_already_published_are_neither_encoded_nor_counted_in_the_sample(
        caplog: pytest.LogCaptureFixture) -> None:
    monitor: Any = evaluator_monitor()
    monitor.settings = monitor.settings.model_copy(update={"outgoing_check_every": 2})
    evaluator = snapshot.Evaluator(monitor)
    caplog.set_level(logging.ERROR, logger="model_monitoring.snapshot")
    report = off_contract()
    out = frozenset(identity("drift", doc) for doc in report.of_kind("drift")[:3])
    events = evaluator.encode(report, out)
    assert [doc for kind, doc, _ in events if kind == "drift"] == report.of_kind("drift")[3:]
    assert evaluator.published == {"drift": 22, "snapshot": 1}
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("outgoing drift")]
    assert len(logged) == 11  # the first of the 22 encoded, then one in 2
