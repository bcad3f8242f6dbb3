"""Topic declarations: every topic the service reads or writes, raw bytes in and out (the code
decodes with orjson and validates against schemas/, which is faster than faust's codecs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.partitioner import murmur2
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
    resolved: TopicT
    recovered: TopicT
    snapshot: TopicT
    completed: TopicT
    failed: TopicT
    runs: TopicT
    snapshot_requests: TopicT
    snapshot_parts: TopicT
    features_repartition: TopicT
    outcomes_repartition: TopicT
    dlq: dict[str, TopicT]
    detector_buckets: TopicT | None = None  # closed minute buckets, keyed by tenant:model

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
        resolved=topic(s.drift_resolved_topic), recovered=topic(s.performance_recovered_topic),
        snapshot=topic(s.snapshot_topic), completed=topic(s.completed_topic),
        failed=topic(s.failed_topic),
        runs=topic(s.runs_topic), snapshot_requests=topic(s.snapshot_requests_topic),
        snapshot_parts=topic(s.snapshot_parts_topic),
        features_repartition=topic(s.repartition_topic(s.features_topic)),
        outcomes_repartition=topic(s.repartition_topic(s.outcomes_topic)),
        dlq={name: topic(s.dlq_topic(name)) for name in sources},
        detector_buckets=topic(s.detector_buckets_topic),
    )


# the changelog-backed tables (`streams/app.py`): partitioned like the inputs, or global (one)
PARTITIONED_TABLES = ("partials", "join_log", "join_buffer", "job_runs", "evaluations", "incidents",
                      "detect_buckets", "detectors")
GLOBAL_TABLES = ("baselines", "run_status")


def evaluator_partition(model_key: str, partitions: int) -> int:
    """The snapshot-parts partition of a (tenant:model): where its parts, its evaluation
    requests and its incidents live. The Java client's default partitioner (murmur2), which is
    where the parts went when they were sent by key, so the incidents stay where they are."""
    return (murmur2(model_key.encode()) & 0x7FFFFFFF) % partitions


def changelog_topic(s: Settings, table: str) -> str:
    """Faust's name for a table's changelog."""
    return f"{s.app_id}-{table}-changelog"


def leader_topic(s: Settings) -> str:
    """Faust's topic for electing the leader (the crontab runs on the leader only)."""
    return f"{s.app_id}-__assignor-__leader"


def topic_specs(s: Settings) -> dict[str, dict[str, object]]:
    """What `ensure_topics` creates: name -> partitions and config. Inputs are co-partitioned
    (same count, same key) so a prediction and its outcome meet on one partition; the
    repartition topics too, so a forwarded record is folded where its partition's tables are
    (streams/repartition.py).

    Faust's own internal topics (the changelogs and the leader topic) are here too: faust
    declares them only after its consumer has subscribed, and on Apache Kafka the group then
    refreshes metadata for topics that do not exist yet, several times a second, each an
    error line, until they do (on a loaded machine past the readiness probe's patience)."""
    p = s.partitions
    specs: dict[str, dict[str, object]] = {
        name: {"partitions": p, "config": {}}
        for name in (s.features_topic, s.outcomes_topic, s.trigger_topic, s.drift_topic,
                     s.degraded_topic, s.drift_resolved_topic, s.performance_recovered_topic,
                     s.snapshot_topic, s.completed_topic, s.failed_topic,
                     s.runs_topic, s.snapshot_requests_topic, s.snapshot_parts_topic,
                     s.repartition_topic(s.features_topic), s.repartition_topic(s.outcomes_topic),
                     s.detector_buckets_topic)
    }
    specs[s.baselines_topic] = {"partitions": p, "config": {**s.compacted_topic_config,
                                                            "cleanup.policy": "compact"}}
    for source in (s.features_topic, s.outcomes_topic, s.baselines_topic, s.trigger_topic):
        specs[s.dlq_topic(source)] = {"partitions": p, "config": {}}
    compacted = {**s.compacted_topic_config, "cleanup.policy": "compact"}
    for table in PARTITIONED_TABLES:
        specs[changelog_topic(s, table)] = {"partitions": p, "config": compacted}
    for table in GLOBAL_TABLES:
        specs[changelog_topic(s, table)] = {"partitions": 1, "config": compacted}
    specs[leader_topic(s)] = {"partitions": 1, "config": {}}
    return specs
