"""The end-offset correction for Tansu (streams/highwater.py) runs on the embedded profile only:
Apache Kafka's ListOffsets is right, and the probe would be one more consumer per recovery."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from model_monitoring.streams.app import create_monitor
from model_monitoring.streams.highwater import ConsumerThread, correct_highwaters
from model_monitoring.streams.settings import load_settings


@pytest.mark.parametrize(("profile", "corrected"), [("embedded", True), ("kafka", False)])
def test_the_correction_follows_the_broker_profile(profile: str, corrected: bool) -> None:
    s = load_settings({"MODEL_MONITORING_APP_ID": f"hw-{profile}",
                       "MODEL_MONITORING_BROKER_PROFILE": profile})
    assert correct_highwaters(create_monitor(s).app) is corrected


def test_on_the_kafka_profile_the_reported_end_offsets_stand(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings({"MODEL_MONITORING_APP_ID": "hw-reported", "MODEL_MONITORING_BROKER_PROFILE": "kafka"})
    app = create_monitor(s).app
    reported = {("t", 0): 7}

    async def faust_highwaters(self: Any, partitions: list[Any]) -> dict[Any, int]:
        return reported

    async def probe(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the Tansu probe ran on the kafka profile")

    monkeypatch.setattr(ConsumerThread.__mro__[1], "_highwaters", faust_highwaters)
    monkeypatch.setattr("model_monitoring.streams.highwater.true_end_offsets", probe)
    thread = ConsumerThread.__new__(ConsumerThread)
    thread.app = app
    thread.consumer = app.consumer
    assert asyncio.run(thread._highwaters([("t", 0)])) == reported


@pytest.mark.parametrize(("env", "wait"), [
    ({"MODEL_MONITORING_BROKER_PROFILE": "embedded"}, 100),
    ({"MODEL_MONITORING_BROKER_PROFILE": "kafka"}, 1500),
    ({"MODEL_MONITORING_BROKER_PROFILE": "kafka", "MODEL_MONITORING_FETCH_MAX_WAIT_MS": "250"}, 250),
])
async def test_the_worker_consumer_fetch_wait_follows_the_profile(env: dict[str, str], wait: int) -> None:
    """Tansu holds a fetch for its whole wait even when data comes, so on the embedded profile
    the worker's consumer waits 100 ms, not faust's 1,500 (each hop of a weekly run paid it)."""
    import inspect

    from aiokafka import AIOKafkaConsumer

    s = load_settings({"MODEL_MONITORING_APP_ID": f"fw-{wait}", **env})
    app = create_monitor(s).app
    thread = app.consumer._thread
    assert isinstance(thread, ConsumerThread)
    consumer = thread._create_worker_consumer(app.transport)
    assert consumer._fetch_max_wait_ms == wait
    # aiokafka builds its Fetcher from that attribute when the consumer starts
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)
