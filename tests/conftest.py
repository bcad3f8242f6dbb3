"""Shared fixtures. The integration tier starts its broker itself (one per session, on a free
loopback port) and stops it; no test assumes a broker is already running.

`MM_TEST_BROKER=tansu` (the default) runs it on the bundled Tansu broker, `MM_TEST_BROKER=kafka`
on Apache Kafka (`commands/kafka_broker.py`, fetched once with Maven, run with Java 17+). Without
Java or Maven the Kafka tier is skipped with the reason, except under CI, where it fails."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from model_monitoring.commands.broker import ENGINES, Broker, make_broker
from model_monitoring.commands.kafka_broker import BrokerUnavailable
from tests.support.scheduling import SuiteScheduling, shared_fixture_problems

ENGINE = os.environ.get("MM_TEST_BROKER", "tansu")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers are right: a test that uses the broker is marked `integration`, so that
    `-m "not integration"` runs every other test without starting one."""
    unmarked = [item.nodeid for item in items
                if "broker" in getattr(item, "fixturenames", ()) and item.get_closest_marker("integration") is None]
    if unmarked:
        raise pytest.UsageError("uses the broker fixture but is not marked integration: " + ", ".join(unmarked))
    shared = shared_fixture_problems(items)
    if shared:
        raise pytest.UsageError("a fixture wider than a test in a module that tests/support/scheduling.py "
                                "spreads over processes (add it to SHARED_FIXTURE_MODULES): " + ", ".join(shared))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> SuiteScheduling | None:
    """`pytest -n N` (xdist's default `--dist load`) runs with the suite's scheduler: a test at a
    time, a module whose tests share a fixture in one piece (tests/support/scheduling.py). An
    explicit other `--dist` keeps xdist's own."""
    return SuiteScheduling(config, log) if config.getvalue("dist") == "load" else None


def start_test_broker(directory: Path) -> Broker:
    """A broker of the session's engine, started in `directory` (its log and data)."""
    if ENGINE not in ENGINES:
        raise pytest.UsageError(f"MM_TEST_BROKER={ENGINE!r}: one of {', '.join(ENGINES)}")
    broker = make_broker(ENGINE, directory / "data", log_path=directory / f"{ENGINE}.log", lean=True)
    try:
        return broker.start()
    except BrokerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"MM_TEST_BROKER=kafka under CI, and: {exc}", pytrace=False)
        pytest.skip(f"Apache Kafka unavailable here: {exc}")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = start_test_broker(tmp_path_factory.mktemp("broker"))
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def scenario_broker(request: pytest.FixtureRequest) -> Broker:
    """A broker for a scenario that fills it: Tansu slows down with every message it holds (its
    group coordinator), so each such scenario gets a Tansu of its own; Kafka does not, so they
    share the session's (ten seconds saved per scenario)."""
    return cast(Broker, request.getfixturevalue("broker" if ENGINE == "kafka" else "own_broker"))


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of the session's engine for one test alone (a scenario that fills or restarts it)."""
    b = start_test_broker(tmp_path)
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def unique() -> str:
    """A prefix that keeps one test's topics and consumer group apart from the others'."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
