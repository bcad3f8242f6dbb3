"""The continuous detectors: one actor per partition of the detector-buckets topic, keyed by
tenant:model like the weekly run's snapshot parts, so a model's detectors and its incidents
(table `incidents`) sit on the same partition as its weekly evaluator. Thin: decode, call
`tables/continuous_detection.apply`, join the incident (`tables/continuous_events.publish`),
write, publish."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson
from faust.types import EventT

from model_monitoring.schemas.rejection import MessageRejected
from model_monitoring.streams.app import Monitor
from model_monitoring.streams.per_event import per_event_agent
from model_monitoring.streams.producer_buffer import flush_durably
from model_monitoring.tables.continuous_detection import ModelDetectors, apply
from model_monitoring.tables.continuous_events import publish
from model_monitoring.tables.health_buckets import ClosedBuckets
from model_monitoring.tables.incidents import IncidentBook
from model_monitoring.tables.keys import IncidentBookKey

log = logging.getLogger("model_monitoring.continuous")


class Detectors:
    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor
        self.policy = monitor.settings.detection_policy()

    async def handle(self, event: EventT[Any]) -> None:
        closed = ClosedBuckets.from_bytes(event.message.value or b"")
        t = self.m.tables
        assert t.detectors is not None
        key = IncidentBookKey(event.message.partition, closed.model_key).encode()
        raw = t.detectors.get(key)
        book = ModelDetectors.from_bytes(raw) if raw is not None else ModelDetectors()
        tenant, model = closed.model_key.split(":", 1)

        def baseline_for(version: str) -> Any:
            return self.m.baselines.lookup(tenant, model, version)

        late_before = book.late_events
        book, changes = apply(book, closed, baseline_for, self.policy)
        if book.late_events > late_before:  # a redelivery changes nothing (apply skips it by its mark)
            self.m.metrics.detector_late.inc(book.late_events - late_before)
        resent = len(book.outbox)  # alerts a crash kept from being sent: again, same eventId
        events: list[tuple[str, Mapping[str, Any]]] = list(book.outbox)
        if changes:
            raw_incidents = t.incidents.get(key)
            incidents = IncidentBook.from_bytes(raw_incidents) if raw_incidents is not None else IncidentBook()
            for change in changes:
                baseline = baseline_for(change.version)
                incidents, kind, doc = publish(incidents, closed.model_key, change,
                                               baseline.sample_size if baseline is not None else 1)
                events.append((kind, doc))
            # no await between reading the incidents and writing them: the weekly evaluator of
            # this key runs on the same partition and event loop
            t.incidents[key] = incidents.to_bytes()
        if not events:
            t.detectors[key] = book.to_bytes()
            return
        # the outbox: saved (and flushed to the changelog) with the state that decided it, sent,
        # then cleared. Killed before the save, the input is redelivered and decides again;
        # after it, the redelivery finds the outbox and sends what it holds.
        t.detectors[key] = replace(book, outbox=tuple(events)).to_bytes()
        await flush_durably(self.m.app)
        for i, (kind, message) in enumerate(events):
            try:
                self.m.validators.validate(kind, message)
            except MessageRejected as exc:
                log.error("outgoing continuous %s message off-contract: %s", kind, exc.detail)
            topic = self.m.topics.drift if kind == "drift" else self.m.topics.degraded
            await topic.send(key=closed.model_key.encode(), value=orjson.dumps(dict(message)))
            log.info("continuous %s %s on %s: %s %s (%s)%s", kind, message["incidentStatus"], closed.model_key,
                     message.get("feature") or message["metric"], message["metric"], message["detector"],
                     " (again, from the outbox)" if i < resent else "")
            if message["incidentStatus"] == "opened" and i >= resent:
                self.m.metrics.alerts.labels("drift" if kind == "drift" else "degraded",
                                             str(message.get("severity") or "degraded")).inc()
        await flush_durably(self.m.app)
        t.detectors[key] = replace(book, outbox=()).to_bytes()


def register(monitor: Monitor) -> None:
    topic = monitor.topics.detector_buckets
    if not monitor.settings.continuous_enabled or topic is None:
        return
    per_event_agent(monitor.app, topic, "detectors", Detectors(monitor).handle)
