"""`ensure_topics` creates every topic the worker will subscribe to before faust starts,
faust's own internal ones included (on Apache Kafka a consumer subscribed to a topic that does
not exist yet logs an error at every metadata refresh until it does)."""

from __future__ import annotations

from model_monitoring.agents.service import build_app
from model_monitoring.streams.settings import load_settings
from model_monitoring.streams.topics import leader_topic, topic_specs


def test_the_specs_hold_every_changelog_with_faust_s_name_partitions_and_compaction() -> None:
    s = load_settings({"MODEL_MONITORING_APP_ID": "specs", "MODEL_MONITORING_PARTITIONS": "4",
                       "MODEL_MONITORING_STORE": "memory", "MODEL_MONITORING_JWT_SECRET": "x" * 32,
                       "MODEL_MONITORING_COMPACTED_TOPIC_CONFIG": '{"segment.ms": "60000"}'})
    app = build_app(s).app
    specs = topic_specs(s)
    for table in app.tables.values():
        topic = table.changelog_topic
        spec = specs[topic.get_topic_name()]
        assert spec["partitions"] == table.partitions
        assert spec["config"] == {"segment.ms": "60000", "cleanup.policy": "compact"}
    assert len(app.tables) == 10  # 8 (join_log and the previous join_buffer) + detect_buckets, detectors
    assert specs[leader_topic(s)] == {"partitions": 1, "config": {}}
    assert app._leader_assignor._leader_topic_name == leader_topic(s)


def test_evaluator_partition_is_where_the_client_s_default_partitioner_sends_a_key() -> None:
    """Parts and evaluation requests go to `evaluator_partition` explicitly; it must be the
    partition a keyed send picked before (aiokafka's default, the Java client's murmur2), or the
    incidents kept on the evaluator partitions would be out of reach after an upgrade."""
    from aiokafka.partitioner import DefaultPartitioner

    from model_monitoring.streams.topics import evaluator_partition

    for n in (1, 3, 8, 12):
        for i in range(500):
            key = f"tenant-{i}:model-{i % 7}"
            assert evaluator_partition(key, n) == DefaultPartitioner()(key.encode(), list(range(n)), [])
