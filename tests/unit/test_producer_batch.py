"""The producer's batches hold several weekly snapshots: with aiokafka's default batch (16 KiB),
smaller than one snapshot (~33 KB at 25 features), each snapshot after the first on a partition
waited for the sender to take the batch before it, one broker round trip each, and the weekly
run published at the broker's pace. A batch stays below what a stock broker accepts in one
(message.max.bytes, 1 MB)."""

from __future__ import annotations

import orjson
from aiokafka.producer.message_accumulator import BatchBuilder

from model_monitoring.streams.app import faust_settings
from model_monitoring.streams.settings import load_settings

STOCK_BROKER_BATCH = 1_048_588  # Kafka's message.max.bytes default


def snapshot_sized() -> bytes:
    """A value the size of a weekly snapshot of 25 features, ~12 bins each."""
    bins = [{"bin": f"[{i}, {i + 1})", "expected": 0.0833, "actual": 0.1, "contribution": 0.0123456789}
            for i in range(12)]
    return orjson.dumps({"features": {f"num_{j:02d}": {"metric": "psi", "value": 0.5, "bins": bins}
                                      for j in range(25)}})


def test_a_producer_batch_holds_several_snapshots_and_stays_under_a_stock_brokers_limit() -> None:
    size = faust_settings(load_settings({}))["producer_max_batch_size"]
    value = snapshot_sized()
    assert len(value) > 16 * 1024  # larger than aiokafka's default batch: alone in each
    builder = BatchBuilder(size, 0)
    appended = 0
    while builder.append(timestamp=None, key=b"tenant:model", value=value) is not None:
        appended += 1
        assert appended < 1000
    assert appended >= 8
    assert builder.size() <= STOCK_BROKER_BATCH
