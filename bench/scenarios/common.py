"""What every reliability scenario shares: its result row (the one the script prints), the
failure a check raises, progress lines, and the polling and event-loop helpers."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

END_MS = 1_795_046_400_000  # a midnight UTC: a run's window is the 7 whole days before it
OUTPUT_KINDS = ("drift", "degraded", "snapshot", "resolved", "recovered")


def progress(message: str) -> None:
    """Progress goes to stderr; stdout holds only the table and the JSON line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class ScenarioFailed(AssertionError):
    """A check of a scenario did not hold."""


@dataclass
class Result:
    """One row of the table."""

    name: str
    load: str = ""
    faults: str = ""
    messages_in: int = 0         # distinct input records (envelope records one by one)
    accounted: int = 0           # counted in the final state + dead-lettered (distinct positions)
    events_expected: int = 0     # drift + degraded + snapshot + resolutions + completion, from the offline oracle
    events_published: int = 0    # distinct events published
    duplicates: int = 0          # copies of an event published more than once
    passed: bool = False
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def check(self, condition: bool, problem: str) -> bool:
        if not condition:
            self.problems.append(problem)
        return condition

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pass": self.passed, "load": self.load, "faults": self.faults,
                "messages_in": self.messages_in, "accounted": self.accounted,
                "events_expected": self.events_expected,
                "events_published": self.events_published, "duplicates": self.duplicates,
                "seconds": round(self.seconds, 1), "problems": self.problems[:10], **self.notes}


def run_async(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def wait_until(predicate: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def seconds_since(started: float) -> float:
    return time.monotonic() - started


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")
