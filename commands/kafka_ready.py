"""Ready for consumer groups, not only listening: on a fresh Apache Kafka the first
FindCoordinator creates `__consumer_offsets` (50 partitions), and until it exists every group
member's requests fail with GroupCoordinatorNotAvailable, one error line each, several a second.
The launcher asks first and waits, so a worker never meets a broker in that state."""

from __future__ import annotations

import asyncio
import time

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError


async def _wait(bootstrap: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    await admin.start()
    try:
        while True:
            try:
                await admin.find_coordinator("model-monitoring-launcher")
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


def wait_group_coordinator(bootstrap: str, timeout: float = 60.0) -> None:
    """Block until the broker answers FindCoordinator for a group (or raise after `timeout`)."""
    asyncio.run(_wait(bootstrap, timeout))
