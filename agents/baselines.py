"""Baselines: `ml.model.baselines` (compacted, key `{tenant or *}:{model}:{version}`) into a
GlobalTable every worker holds in full, and a parsed cache in front of it."""

from __future__ import annotations

import logging
from typing import Any

from faust.types import EventT, StreamT

from model_monitoring.schemas.validation import MessageRejected, decode_json
from model_monitoring.streams.app import Monitor
from model_monitoring.streams.dlq import DeadLetter, send_dead_letters
from model_monitoring.tables.baseline import Baseline, BaselineError

log = logging.getLogger("model_monitoring.baselines")


def baseline_table_key(tenant: str | None, model: str, version: str) -> bytes:
    """GlobalTable keys: partition 0 (the table has one), then the contract key."""
    return f"0|{tenant or '*'}:{model}:{version}".encode()


class BaselineCache:
    """Tenant-specific baseline first, then the `*` one; parsed once per stored value."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._parsed: dict[bytes, tuple[bytes, Baseline]] = {}

    def lookup(self, tenant: str, model: str, version: str) -> Baseline | None:
        for key in (baseline_table_key(tenant, model, version), baseline_table_key(None, model, version)):
            raw = self.table.get(key)
            if raw is None:
                continue
            cached = self._parsed.get(key)
            if cached is not None and cached[0] == raw:
                return cached[1]
            baseline = Baseline.from_dict(decode_json(raw, 1 << 30))  # stored only after validation
            self._parsed[key] = (raw, baseline)
            return baseline
        return None


async def store_baseline(monitor: Monitor, event: EventT) -> None:
    msg = event.message
    table = monitor.tables.baselines
    try:
        if msg.value is None:  # a tombstone withdraws the baseline of that key
            if not msg.key:
                raise MessageRejected("schema", "a tombstone needs the baseline key")
            tenant, model, version = msg.key.decode().split(":", 2)
            table.pop(baseline_table_key(None if tenant == "*" else tenant, model, version), None)
            return
        doc = decode_json(msg.value, monitor.settings.max_message_bytes)
        monitor.validators.validate("baselines", doc)
        baseline = Baseline.from_dict(doc)  # type: ignore[arg-type]
    except (MessageRejected, BaselineError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, MessageRejected) else "schema"
        detail = exc.detail if isinstance(exc, MessageRejected) else str(exc)
        await send_dead_letters(monitor.topics.dlq_for(monitor.topics.baselines), [DeadLetter(
            msg.topic, msg.partition, msg.offset, msg.key, msg.value, reason, detail)], monitor.metrics)
        return
    key = baseline_table_key(baseline.tenant_id, baseline.model_id, baseline.model_version)
    table[key] = msg.value
    monitor.metrics.records.labels(msg.topic).inc()
    log.info("baseline registered: %s (%d features, n=%d)", key.decode()[2:],
             len(baseline.features), baseline.sample_size)


def register(monitor: Monitor) -> None:
    @monitor.app.agent(monitor.topics.baselines, name="baselines")
    async def baselines_agent(stream: StreamT) -> None:
        async for event in stream.events():
            await store_baseline(monitor, event)
