"""Regression: a Kafka broker killed and restarted (about 25 s down) made one worker write ~7,600
error lines, aiokafka's every reconnect attempt and metadata refresh (found by
bench/reliability.py --engine kafka, broker killed mid-ingest). The worker's log handler now
lets through the first line of each kind, then one every 30 s with the count held back."""

from __future__ import annotations

import io
import logging
import logging.config

import orjson

from model_monitoring.streams.logs import RepeatedLinesFilter, logging_config


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_kind_of_kafka_client_line_once_per_interval_with_the_count_held_back() -> None:
    now = [0.0]
    repeats = RepeatedLinesFilter(every=30.0, clock=lambda: now[0])
    unable = "Unable connect to node with id %s: %s"
    assert repeats.filter(record("aiokafka", unable, 1, "refused"))
    passed = 0
    for _ in range(600):  # 25 s of reconnect attempts, every 40 ms
        now[0] += 0.04
        passed += repeats.filter(record("aiokafka", unable, 1, "refused"))
    assert passed == 0
    assert repeats.filter(record("aiokafka.cluster", "Unable to update metadata from %s", [1]))  # another kind
    now[0] = 30.0
    again = record("aiokafka", unable, 1, "refused")
    assert repeats.filter(again) and again.fields == {"repeatsSuppressed": 600}
    now[0] += 0.04
    assert not repeats.filter(record("aiokafka", unable, 1, "refused"))


def test_the_service_s_own_lines_are_never_held_back() -> None:
    repeats = RepeatedLinesFilter(clock=lambda: 0.0)
    assert all(repeats.filter(record("model_monitoring.dlq", "dead letter %s", i)) for i in range(100))


def test_the_worker_logging_config_applies_it() -> None:
    stream = io.StringIO()
    config = logging_config("warning")
    config["handlers"]["stderr"]["stream"] = stream
    names = (None, *config["loggers"])
    saved = {n: (logging.getLogger(n).level, logging.getLogger(n).handlers[:]) for n in names}
    logging.config.dictConfig(config)
    try:
        for _ in range(50):
            logging.getLogger("aiokafka").error("Unable connect to node with id %s: %s", 1, "refused")
        logging.getLogger("model_monitoring.test").warning("ours")
        lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    finally:  # the test session's logging as it was
        for n, (level, handlers) in saved.items():
            logging.getLogger(n).setLevel(level)
            logging.getLogger(n).handlers[:] = handlers
    assert [line["message"] for line in lines] == ["Unable connect to node with id 1: refused", "ours"]
