"""MODEL_MONITORING_COMPACTED_TOPIC_CONFIG: the operator's extra topic configs reach every compacted
topic the service creates — the tables' changelogs (faust creates them) and the baselines topic
(ensure_topics creates it) — and no other topic."""

from __future__ import annotations

from pathlib import Path

from model_monitoring.streams.app import create_monitor
from model_monitoring.streams.settings import load_settings
from model_monitoring.streams.topics import topic_specs

EXTRA = {"segment.ms": "1000", "min.cleanable.dirty.ratio": "0.01"}


def test_from_the_environment_to_every_changelog_and_the_baselines_topic() -> None:
    s = load_settings({"MODEL_MONITORING_APP_ID": "mm",
                       "MODEL_MONITORING_COMPACTED_TOPIC_CONFIG": '{"segment.ms": "1000", '
                                                                  '"min.cleanable.dirty.ratio": "0.01"}'})
    assert s.compacted_topic_config == EXTRA
    monitor = create_monitor(s)
    tables = vars(monitor.tables)
    assert set(tables) == {"partials", "join_log", "join_buffer", "baselines", "job_runs", "evaluations", "incidents",
                           "run_status", "detect_buckets", "detectors"}
    for name, table in tables.items():
        topic = table.changelog_topic
        assert topic.get_topic_name() == f"mm-{name}-changelog"
        assert topic.compacting and dict(topic.config) == EXTRA, name
    # ensure_topics creates them all before faust starts (faust skips a topic that exists)
    specs = topic_specs(s)
    compacted = {s.baselines_topic} | {f"mm-{name}-changelog" for name in tables}
    assert all(specs[name]["config"] == {**EXTRA, "cleanup.policy": "compact"} for name in compacted)
    assert all(spec["config"] == {} for name, spec in specs.items() if name not in compacted)


def test_unset_changes_nothing_and_a_config_file_section_is_a_value(tmp_path: Path) -> None:
    s = load_settings({"MODEL_MONITORING_APP_ID": "mm"})
    assert s.compacted_topic_config == {}
    assert all(dict(t.changelog_topic.config) == {} for t in vars(create_monitor(s).tables).values())
    config = tmp_path / "mm.toml"
    config.write_text('[compacted_topic_config]\n"segment.ms" = "1000"\n')
    assert load_settings({}, config).compacted_topic_config == {"segment.ms": "1000"}
