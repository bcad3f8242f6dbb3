"""Regression: a surviving worker exited after a few rebalances ("the surviving worker died",
the Kafka tier's rebalance scenario). faust cancelled the actor of each revoked isolated
partition, took the cancellation for a crash, and its supervisor restarted the actor on the
revoked partition, again and again, until its budget of 100 restarts a second ran out and it
raised SystemExit. The project's Agent (streams/agent.py) stops a revoked actor for good.

The real ingest agents, started as the worker starts them, go through ten rebalances (every
partition revoked, then assigned again); no actor crashes, the supervisor restarts nothing, and
after the last one there is exactly one live actor per assigned partition, each still reading.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from faust.types import TP

from model_monitoring.streams.agent import Agent
from tests.agents.test_ingest_agent import UNREACHABLE, make_monitor

REBALANCES = 10


@pytest.mark.parametrize("name", ["ingest-features", "ingest-outcomes"])
async def test_ten_rebalances_restart_nothing(tmp_path: Path, name: str) -> None:
    m = make_monitor(tmp_path, "rebalances", UNREACHABLE)
    agent = m.app.agents[name]
    assert isinstance(agent, Agent)
    topic = m.settings.features_topic if name == "ingest-features" else m.settings.outcomes_topic
    tps = {TP(topic, p) for p in range(m.settings.partitions)}
    restarts: list[object] = []
    await agent.start()
    try:
        supervisor = agent.supervisor
        original = supervisor.restart_service

        async def counted(service: object) -> None:
            restarts.append(service)
            await original(service)  # type: ignore[arg-type]
        supervisor.restart_service = counted  # type: ignore[method-assign]

        for _ in range(REBALANCES):
            await agent.on_partitions_assigned(tps)
            await asyncio.sleep(0.05)
            await agent.on_partitions_revoked(tps)
            # the supervisor wakes on a crash; give it its turn
            supervisor.wakeup()
            await asyncio.sleep(0.05)
        await agent.on_partitions_assigned(tps)
        supervisor.wakeup()
        await asyncio.sleep(0.1)

        assert restarts == []
        live = [a for a in agent._actors if not a.should_stop]
        assert sorted(p for a in live for p in a.active_partitions or ()) == sorted(tps)
        assert all(not a.crashed and a.actor_task is not None and not a.actor_task.done() for a in live)
        assert len(supervisor._services) == len(tps)  # revoked actors left the supervisor
    finally:
        await agent.stop()
