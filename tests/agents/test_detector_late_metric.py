"""The continuous detectors' late events are on /metrics
(`model_monitoring_detector_late_events_total`): events of closed minutes that reach a model's
detectors after that minute was fed are counted, not fed. In a replay a partition's log can be
heard from only after another's has moved the feed past its first minutes (README, "Backfills and
catch-up"); the on-call engineer sees it here, not only in the `detectors` table.

The real detectors agent handler (`agents/continuous.Detectors.handle`) over the tables and
metrics of `test_regression_continuous_outbox`, fed one stream of two partitions in two orders."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from bench.continuous_streams import minutes
from model_monitoring.agents.continuous import Detectors
from model_monitoring.tables.continuous_detection import ModelDetectors
from model_monitoring.tables.health_buckets import MINUTE_MS, ClosedBuckets
from tests.agents.test_regression_continuous_outbox import Broker, event, monitor
from tests.unit.test_continuous_detection import BASELINE, T0

LATE = "model_monitoring_detector_late_events_total"


def stream() -> list[ClosedBuckets]:
    return list(minutes(BASELINE, np.random.default_rng(11), start_minute=T0 // MINUTE_MS, partitions=2,
                        n_minutes=120))


def events_in(closed: list[ClosedBuckets]) -> int:
    return (sum(h.n for c in closed for h in c.health.values())
            + sum(e.n for c in closed for e in c.errors.values()))


async def feed(order: list[ClosedBuckets]) -> tuple[float, int]:
    """(the metric, the detectors' own count of late events) after the handler took `order`,
    each message twice (a redelivery)."""
    tables = SimpleNamespace(detectors={}, incidents={})
    m = monitor(Broker(), tables)
    detectors = Detectors(m)
    for closed in order:
        await detectors.handle(event(closed))
        await detectors.handle(event(closed))
    [raw] = tables.detectors.values()
    return m.metrics.registry.get_sample_value(LATE), ModelDetectors.from_bytes(raw).late_events


async def test_live_only_the_minute_before_a_partition_was_first_heard_from_is_late() -> None:
    closed = stream()
    # as a live stream sends them: minute by minute, partition 0 first. Partition 0's first
    # closed minute is fed before partition 1 is heard from, so partition 1's is late
    first_minute = [c for c in closed if c.partition == 1 and c.closed_through == T0 // MINUTE_MS + 1]
    metric, late = await feed(closed)
    assert late == events_in(first_minute) > 0
    assert metric == late


async def test_a_partition_heard_from_after_the_feed_passed_its_minutes_is_counted_late() -> None:
    closed = stream()
    first, second = [c for c in closed if c.partition == 0], [c for c in closed if c.partition == 1]
    # a replay: partition 0's whole log reaches the detectors before partition 1 is heard from,
    # so the feed is past every minute of partition 1 when its first closed minutes arrive
    metric, late = await feed(first + second)
    assert late == events_in(second) > 0
    assert metric == late  # each once: the redeliveries counted nothing
