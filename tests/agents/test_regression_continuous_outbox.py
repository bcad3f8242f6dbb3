"""Regression (issue 14): a continuous alert was lost when the worker died between writing the
detector state that decided it and sending it. The redelivered input is a no-op for the
detectors (their marks say it was fed), so nothing decided the alert again. The alerts now go
through an outbox in the detector state: saved (and flushed) before they are sent, cleared
after; a redelivery that finds a full outbox sends what it holds, with the same eventId.

The real detectors agent handler (`agents/continuous.Detectors.handle`) and fold, on a stream
whose feature `x` turns null; the kill is played at each point around the send. The tables are
what reached the changelog: the handler flushes before it sends."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest

from bench.continuous_streams import minutes
from model_monitoring.agents.continuous import Detectors
from model_monitoring.schemas.validation import Validators
from model_monitoring.streams.metrics import Metrics
from model_monitoring.streams.settings import load_settings
from model_monitoring.tables.continuous_detection import ModelDetectors
from model_monitoring.tables.health_buckets import MINUTE_MS, ClosedBuckets
from tests.unit.test_continuous_detection import BASELINE, T0


class Killed(Exception):
    """The worker's death at the chosen point."""


class Broker:
    """What reached the alert topics, in order."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.kill_at: str | None = None

    def topic(self) -> Any:
        async def send(key: bytes, value: bytes) -> None:
            if self.kill_at == "before-send":
                raise Killed
            self.sent.append(orjson.loads(value))
            if self.kill_at == "after-send":
                raise Killed
        return SimpleNamespace(send=send)

    async def flush(self) -> None:
        pass


def monitor(broker: Broker, tables: SimpleNamespace) -> Any:
    settings = load_settings({})
    return SimpleNamespace(
        settings=settings, tables=tables, validators=Validators(), metrics=Metrics(),
        baselines=SimpleNamespace(lookup=lambda tenant, model, version: BASELINE),
        topics=SimpleNamespace(drift=broker.topic(), degraded=broker.topic()),
        app=SimpleNamespace(producer=broker))


def stream() -> list[ClosedBuckets]:
    change = T0 // MINUTE_MS + 300
    return list(minutes(BASELINE, np.random.default_rng(6), start_minute=T0 // MINUTE_MS, partitions=2,
                        n_minutes=400, null_feature="x", change_minute=change))


def event(closed: ClosedBuckets) -> Any:
    return SimpleNamespace(message=SimpleNamespace(value=closed.to_bytes(), partition=0))


async def run(kill_at: str | None) -> tuple[list[dict[str, Any]], SimpleNamespace]:
    """Feed the stream; at the first alert the worker dies at `kill_at`, and a new one (over the
    same tables) gets that input again and goes on."""
    broker = Broker()
    tables = SimpleNamespace(detectors={}, incidents={})
    detectors = Detectors(monitor(broker, tables))
    killed = False
    for closed in stream():
        broker.kill_at = kill_at if not killed else None
        try:
            await detectors.handle(event(closed))
        except Killed:
            killed = True
            broker.kill_at = None
            detectors = Detectors(monitor(broker, tables))  # the restarted worker
            await detectors.handle(event(closed))            # the input, redelivered
    return broker.sent, tables


async def test_without_a_crash_the_outbox_ends_empty() -> None:
    sent, tables = await run(None)
    assert sent and sent[0]["incidentStatus"] == "opened" and sent[0]["metric"] == "missing_share"
    assert all(ModelDetectors.from_bytes(raw).outbox == () for raw in tables.detectors.values())


@pytest.mark.parametrize("kill_at", ["before-send", "after-send"])
async def test_an_alert_decided_before_a_crash_is_sent_after_it(kill_at: str) -> None:
    expected, _ = await run(None)
    sent, tables = await run(kill_at)
    # nothing lost: every alert of the run without a crash, in order, with the same eventId
    assert [d["eventId"] for d in dict((d["eventId"], d) for d in sent).values()] == \
        [d["eventId"] for d in expected]
    if kill_at == "before-send":
        assert sent == expected
    else:  # sent, then killed before the outbox was cleared: once more, the same message
        assert len(sent) == len(expected) + 1 and sent[0] == sent[1] == expected[0]
    assert all(ModelDetectors.from_bytes(raw).outbox == () for raw in tables.detectors.values())
