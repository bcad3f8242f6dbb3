"""Shared fixtures. The integration tier starts the bundled broker itself (one per session, on a
free loopback port) and stops it; no test assumes a broker is already running."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_monitoring.commands.broker import EmbeddedBroker, free_port


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    b = EmbeddedBroker(port=free_port(), log_path=log).start()
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
