"""Baselines: `ml.model.baselines` (compacted, key `{tenant or *}:{model}:{version}`) into a
GlobalTable every worker holds in full (`tables/baseline_lookup.py` reads it)."""

from __future__ import annotations

import logging

from faust.types import EventT

from model_monitoring.schemas.rejection import MessageRejected
from model_monitoring.schemas.validation import decode_json
from model_monitoring.streams.app import Monitor
from model_monitoring.streams.dlq import DeadLetter, send_dead_letters
from model_monitoring.streams.per_event import per_event_agent
from model_monitoring.tables.baseline import Baseline, BaselineError
from model_monitoring.tables.keys import BaselineKey

log = logging.getLogger("model_monitoring.baselines")


async def store_baseline(monitor: Monitor, event: EventT) -> None:
    msg = event.message
    table = monitor.tables.baselines
    try:
        if msg.value is None:  # a tombstone withdraws the baseline of that key
            if not msg.key:
                raise MessageRejected("schema", "a tombstone needs the baseline key")
            table.pop(BaselineKey.from_contract_key(msg.key.decode()).encode(), None)
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
    key = BaselineKey(baseline.tenant_id, baseline.model_id, baseline.model_version).encode()
    table[key] = msg.value
    monitor.metrics.records.labels(msg.topic).inc()
    log.info("baseline registered: %s (%d features, n=%d)", key.decode()[2:],
             len(baseline.features), baseline.sample_size)


def register(monitor: Monitor) -> None:
    per_event_agent(monitor.app, monitor.topics.baselines, "baselines",
                    lambda event: store_baseline(monitor, event))
