"""Agents that handle their topic one event at a time (the weekly run's and the baselines')."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.types import EventT, StreamT, TopicT

from model_monitoring.streams.write_gate import write_gate

Handler = Callable[[EventT[Any]], Awaitable[None]]


def per_event_agent(app: faust.App, topic: TopicT, name: str, handle: Handler) -> None:
    """Register an agent named `name` on `topic` that awaits `handle(event)` for each event."""

    gate = write_gate(app)

    async def agent(stream: StreamT[Any]) -> None:
        async for event in stream.events():
            async with gate.writing():  # not while a rebalance recovers the tables
                await handle(event)

    agent.__name__ = agent.__qualname__ = name.replace("-", "_")
    app.agent(topic, name=name)(agent)
