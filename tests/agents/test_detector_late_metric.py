"""What the continuous detectors feed does not depend on which partition's log they hear from
first, within the idle window; what reaches them after its minute was fed is counted late, and
on /metrics (`model_monitoring_detector_late_events_total`), not only in the `detectors` table.

Before, a log the detectors had not heard from held nothing back: live, the minute before a
second partition was first heard from was late (135 events here), and in a replay whatever
partition's log came first decided what the others lost (README, "Backfills and catch-up").

The real detectors agent handler (`agents/continuous.Detectors.handle`) over the tables of
`test_regression_continuous_outbox`, fed one stream of two partitions in several orders, each
message twice (a redelivery)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from model_monitoring.agents.continuous import Detectors
from model_monitoring.streams.settings import load_settings
from model_monitoring.tables.continuous_detection import ModelDetectors
from model_monitoring.tables.health_buckets import MINUTE_MS, ClosedBuckets
from tests.agents.test_regression_continuous_outbox import Broker, event, monitor
from tests.unit.test_continuous_detection import T0, _stream

LATE = "model_monitoring_detector_late_events_total"
CHANGE = T0 // MINUTE_MS + 80


def stream() -> list[ClosedBuckets]:
    """Two partitions, 160 minutes, feature `x` null from minute 80 on: an alert to find."""
    return _stream(11, n_minutes=160, null_feature="x", change_minute=CHANGE)


def events_in(closed: list[ClosedBuckets]) -> int:
    return (sum(h.n for c in closed for h in c.health.values())
            + sum(e.n for c in closed for e in c.errors.values()))


async def feed(order: list[ClosedBuckets], idle_minutes: int = 5) -> tuple[float, ModelDetectors, list[Any]]:
    """(the metric, the detectors' state, the alerts sent) after the handler took `order`."""
    tables = SimpleNamespace(detectors={}, incidents={})
    broker = Broker()
    m = monitor(broker, tables)
    m.settings = load_settings({"MODEL_MONITORING_PARTITIONS": "2",
                                "MODEL_MONITORING_CONTINUOUS_IDLE_MINUTES": str(idle_minutes)})
    detectors = Detectors(m)
    for closed in order:
        await detectors.handle(event(closed))
        await detectors.handle(event(closed))
    [raw] = tables.detectors.values()
    return m.metrics.registry.get_sample_value(LATE), ModelDetectors.from_bytes(raw), broker.sent


def states(book: ModelDetectors) -> dict[str, Any]:
    """Each stream's state as stored (river's detectors compare by identity)."""
    return {k: v.to_json() for k, v in book.streams.items()}


def by_partition(closed: list[ClosedBuckets]) -> tuple[list[ClosedBuckets], list[ClosedBuckets]]:
    return [c for c in closed if c.partition == 0], [c for c in closed if c.partition == 1]


async def test_live_nothing_is_late_and_the_alert_is_found() -> None:
    metric, book, sent = await feed(stream())
    assert (metric, book.late_events) == (0.0, 0)
    assert [d["metric"] for d in sent if d["incidentStatus"] == "opened"] == ["missing_share"]


async def test_a_replay_within_the_idle_window_feeds_what_the_live_stream_does() -> None:
    closed = stream()
    first, second = by_partition(closed)
    _, live, live_sent = await feed(closed, idle_minutes=1000)
    for order in (first + second, second + first):  # one partition's whole log, then the other's
        metric, book, sent = await feed(order, idle_minutes=1000)
        assert (metric, book.late_events) == (0.0, 0)
        assert states(book) == states(live) and book.fed == live.fed
        assert [d["eventId"] for d in sent] == [d["eventId"] for d in live_sent]


async def test_a_log_heard_from_after_it_went_idle_is_counted_late() -> None:
    first, second = by_partition(stream())
    # partition 0's log runs 160 minutes ahead before partition 1 is heard from: with 5 idle
    # minutes, partition 1 stopped holding the feed back, and every minute of it is late
    metric, book, _ = await feed(first + second)
    assert book.late_events == events_in(second) > 0
    assert metric == book.late_events  # each once: the redeliveries counted nothing
