"""Agents under `agent.test_context()` with the memory store: the real ingest agent folds a
batch into its tables; a bad record in an envelope does not stop the good ones."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from model_monitoring.agents.service import build_app
from model_monitoring.commands.simulate import reference_records
from model_monitoring.streams.settings import load_settings
from model_monitoring.tables.baseline import build_baseline
from model_monitoring.tables.keys import BaselineKey, PartialKey, is_partial_key
from model_monitoring.tables.partial import PartialState


@pytest.fixture
def monitor(tmp_path: Any, broker: Any, unique: str) -> Any:
    # the agent runs on an in-memory channel; its table changelog and DLQ sends go to the
    # session's embedded broker (the real producer, nothing mocked)
    s = load_settings({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "MODEL_MONITORING_APP_ID": unique,
                       "MODEL_MONITORING_STORE": "memory", "MODEL_MONITORING_AUTH_DISABLED": "true",
                       "MODEL_MONITORING_DATA_DIR": str(tmp_path), "MODEL_MONITORING_PARTITIONS": "2",
                       "MODEL_MONITORING_BATCH_SIZE": "3", "MODEL_MONITORING_CRON_ENABLED": "false"})
    m = build_app(s)
    m.app.finalize()
    m.app.conf.store = "memory://"
    m.app.flow_control.resume()
    return m


def record(i: int) -> dict[str, Any]:
    rec = reference_records("churn", n=5, seed=i)[i % 5]
    rec.pop("outcome")
    return dict(rec, predictionId=f"p{i}", tenantId="acme", timestamp="2026-11-20T10:00:00Z",
                segment="emea")


async def test_ingest_agent_counts_a_batch(monitor: Any) -> None:
    baseline = build_baseline(reference_records("churn", n=500, seed=1), model_id="churn",
                              model_version="3", tenant_id=None, task="classification")
    monitor.tables.baselines.data[BaselineKey(None, "churn", "3").encode()] = orjson.dumps(baseline.to_dict())
    agent = monitor.app.agents["ingest-features"]
    await monitor.app.producer.start()
    async with agent.test_context() as ctx:
        for i in range(3):
            await ctx.put(key=f"p{i}".encode(), value=orjson.dumps(record(i)), wait=False)
        await ctx.put(key=b"p3", value=orjson.dumps({"records": [record(3), record(4)]}), wait=False)
        await ctx.put(key=b"p5", value=orjson.dumps({"records": [record(5), {"bad": 1}]}), wait=False)
        for _ in range(100):
            states = [PartialState.from_bytes(v) for k, v in monitor.tables.partials.data.items()
                      if is_partial_key(k)]
            if sum(s.histogram.n for s in states) >= 6:
                break
            await __import__("asyncio").sleep(0.05)
    await monitor.app.producer.stop()
    keys = [PartialKey.decode(k) for k in monitor.tables.partials.data if is_partial_key(k)]
    assert {(k.tenant_id, k.model_id, k.segment) for k in keys} == {("acme", "churn", "emea")}
    total = sum(PartialState.from_bytes(v).histogram.n for k, v in monitor.tables.partials.data.items()
                if is_partial_key(k))
    assert total == 6  # five good singles/envelope records + the good half of the mixed envelope
    assert len([k for k in monitor.tables.join_buffer.data]) == 6


async def test_regression_producer_failure_is_not_dead_lettered(monitor: Any) -> None:
    """Found by this tier: with the producer down, the record-by-record fallback sent every good
    record to the DLQ as `internal_error`. A broker failure is not a record defect: it must
    propagate (the worker restarts and the batch is redelivered), and no record is rejected."""
    from model_monitoring.agents.ingest import IngestShell
    from model_monitoring.schemas.models import InferenceRecord

    shell = IngestShell(monitor)
    records = [(0, 0, InferenceRecord.from_dict(record(0))), (1, 0, InferenceRecord.from_dict(record(1)))]
    with pytest.raises(RuntimeError, match="Producer not Running"):
        await shell.fold(0, "features", records)
