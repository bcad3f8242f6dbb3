"""Topic declarations: every topic the service reads or writes, raw bytes in and out (the code
decodes with orjson and validates against schemas/, which is faster than faust's codecs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TopicT

from model_monitoring.streams.settings import Settings


@dataclass(frozen=True)
class Topics:
    features: TopicT
    outcomes: TopicT
    baselines: TopicT
    trigger: TopicT
    drift: TopicT
    degraded: TopicT
    snapshot: TopicT
    completed: TopicT
    failed: TopicT
    runs: TopicT
    snapshot_requests: TopicT
    snapshot_parts: TopicT
    dlq: dict[str, TopicT]

    def dlq_for(self, source: TopicT) -> TopicT:
        return self.dlq[next(iter(source.topics))]


def declare_topics(app: faust.App, s: Settings) -> Topics:
    def topic(name: str, partitions: int | None = None, **kw: Any) -> TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=partitions or s.partitions, **kw)

    sources = [s.features_topic, s.outcomes_topic, s.baselines_topic, s.trigger_topic]
    return Topics(
        features=topic(s.features_topic), outcomes=topic(s.outcomes_topic),
        baselines=topic(s.baselines_topic), trigger=topic(s.trigger_topic),
        drift=topic(s.drift_topic), degraded=topic(s.degraded_topic),
        snapshot=topic(s.snapshot_topic), completed=topic(s.completed_topic),
        failed=topic(s.failed_topic),
        runs=topic(s.runs_topic), snapshot_requests=topic(s.snapshot_requests_topic),
        snapshot_parts=topic(s.snapshot_parts_topic),
        dlq={name: topic(s.dlq_topic(name)) for name in sources},
    )


def topic_specs(s: Settings) -> dict[str, dict[str, object]]:
    """What `ensure_topics` creates: name -> partitions and config. Inputs are co-partitioned
    (same count, same key) so a prediction and its outcome meet on one partition."""
    p = s.partitions
    specs: dict[str, dict[str, object]] = {
        name: {"partitions": p, "config": {}}
        for name in (s.features_topic, s.outcomes_topic, s.trigger_topic, s.drift_topic,
                     s.degraded_topic, s.snapshot_topic, s.completed_topic, s.failed_topic,
                     s.runs_topic, s.snapshot_requests_topic, s.snapshot_parts_topic)
    }
    specs[s.baselines_topic] = {"partitions": p, "config": {**s.compacted_topic_config,
                                                            "cleanup.policy": "compact"}}
    for source in (s.features_topic, s.outcomes_topic, s.baselines_topic, s.trigger_topic):
        specs[s.dlq_topic(source)] = {"partitions": p, "config": {}}
    return specs
