"""Waiting for a concrete condition, never for a fixed time: poll until it holds or a deadline
passes, then fail with a message that says what was awaited (and, for a worker, its log)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable

from model_monitoring.commands.harness import WorkerProcess, consumed, produce
from model_monitoring.commands.simulate import Message
from model_monitoring.streams.settings import Settings

Condition = Callable[[], bool | Awaitable[bool]]


async def until(condition: Condition, timeout: float, every: float = 0.1,
                failure: Callable[[], str] | str = "condition not reached") -> None:
    """Poll `condition` (sync or async) until it holds; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout}s: {failure() if callable(failure) else failure}")
        await asyncio.sleep(every)


def wait_until(condition: Callable[[], bool], timeout: float, every: float = 0.5,
               failure: Callable[[], str] | str = "condition not reached") -> None:
    """`until` for synchronous code (a test driving a worker process; the condition may run
    its own event loop)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout}s: {failure() if callable(failure) else failure}")
        time.sleep(every)


async def until_consumed(bootstrap: str, group: str, topics: list[str], timeout: float,
                         failure: Callable[[], str] | str = "") -> None:
    """Wait until `consumed`; a worker's group commits only after its producer flushed, so by
    then every output of those messages is in its topic."""
    await until(lambda: consumed(bootstrap, group, topics), timeout, every=0.5,
                failure=failure or f"group {group} still lags on {topics}")


def wait_for_baselines(worker: WorkerProcess, s: Settings, n: int, timeout: float = 60) -> None:
    """The worker has consumed `n` messages of the baselines topic."""
    wait_until(lambda: worker.metric("model_monitoring_records_consumed_total", topic=s.baselines_topic) >= n,
               timeout, every=0.3, failure=worker.log_tail)


def feed(bootstrap: str, s: Settings, worker: WorkerProcess, messages: Iterable[Message], timeout: float) -> None:
    """Produce simulated messages, each to its kind's input topic, then wait until the worker's
    group has consumed both inputs."""
    topic_of = {"features": s.features_topic, "outcomes": s.outcomes_topic}
    asyncio.run(produce(bootstrap, [(topic_of[m.kind], m.key, m.value) for m in messages]))
    asyncio.run(until_consumed(bootstrap, s.app_id, [s.features_topic, s.outcomes_topic], timeout,
                               failure=worker.log_tail))
