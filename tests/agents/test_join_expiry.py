"""The maintenance timer on the join log (agents/maintenance.py `expire_state`): entries past the
TTL and grace leave the index, counted by the state they expired in, and the batches no live
entry is in leave the log (a tombstone each); a rebuild from what is left agrees."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_monitoring.agents.ingest import IngestShell
from model_monitoring.agents.maintenance import expire_state
from model_monitoring.commands.broker import Broker
from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.streams.admin import ensure_topics
from model_monitoring.streams.app import Monitor
from model_monitoring.tables.join_log import latest_entries
from model_monitoring.tables.keys import JoinBatchKey, JoinKey
from tests.agents.test_ingest_agent import make_monitor

DAY = 86_400_000
START = 1_767_225_600_000  # 2026-01-01


def prediction(pid: str, day: int) -> InferenceRecord:
    return InferenceRecord(pid, "acme", "churn", "3", START + day * DAY, 0.8, None, {"x": 1.0})


def sample(monitor: Monitor, name: str, **labels: str) -> float:
    return sum(s.value for metric in monitor.metrics.registry.collect() for s in metric.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture
async def monitor(tmp_path: Path, broker: Broker, unique: str) -> Monitor:
    m = make_monitor(tmp_path, unique, broker.bootstrap)
    await ensure_topics(m.settings)
    return m


@pytest.mark.integration
async def test_expiry_drops_entries_past_the_ttl_and_the_batches_left_empty(monitor: Monitor) -> None:
    shell = IngestShell(monitor)
    log = monitor.tables.join_log.data
    await monitor.app.producer.start()
    try:
        await shell.fold(0, "features", [(0, 0, prediction("p1", 0)), (1, 0, prediction("p2", 0)),
                                         (2, 0, prediction("p3", 0))])          # batch 0
        await shell.fold(0, "outcomes", [(0, 0, OutcomeRecord("p1", "acme", "churn", 1.0, START + 10 * DAY))])  # batch 1
        await shell.fold(0, "features", [(3, 0, prediction("p4", 200))])        # batch 2: the mark at day 200
        assert sorted(JoinBatchKey.decode(k).seq for k in log) == [0, 1, 2]
        # TTL 90 days + 35 days' grace: what was last touched before day 75 expires
        partials, joins = await expire_state(monitor)
    finally:
        await monitor.app.producer.stop()
    assert joins == 3
    assert sample(monitor, "model_monitoring_join_expired_total", state="matched") == 1
    assert sample(monitor, "model_monitoring_join_expired_total", state="unmatched_prediction") == 2
    assert sample(monitor, "model_monitoring_join_buffer_entries") == 1
    assert sorted(JoinBatchKey.decode(k).seq for k in log) == [2]  # 0 and 1 hold nothing alive
    p4 = JoinKey(0, "p4").encode()
    assert list(latest_entries(dict(log.items()))) == [p4]
    assert [JoinKey(0, p).encode() for p in ("p1", "p2", "p3", "p4")
            if monitor.joins.get(0, JoinKey(0, p).encode()) is not None] == [p4]
    monitor.joins.forget([0])  # a rebalance: rebuilt from the log alone
    await monitor.joins.ensure(0, START + 200 * DAY, monitor.settings.join_ttl_ms)
    assert monitor.joins.get(0, p4) is not None and monitor.joins.get(0, JoinKey(0, "p1").encode()) is None
