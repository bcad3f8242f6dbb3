"""Simulated closed minute buckets of one model at realistic rates, for the pure detection code
(bench/continuous.py and tests/unit/test_continuous_detection.py): what the ingest would send,
without Kafka. Draws per minute from the baseline's shares with numpy (binomial counts), so a
model-week costs milliseconds."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.continuous_detection import share_sums
from model_monitoring.tables.error_sums import ErrorSums
from model_monitoring.tables.health_buckets import ClosedBuckets, HealthSums

WEEK_MINUTES = 7 * 24 * 60


def minutes(baseline: Baseline, rng: np.random.Generator, *, start_minute: int, n_minutes: int,
            events_per_s: float = 5.0, outcomes_per_min: float = 1.0, brier: float = 0.2,
            partitions: int = 1, null_feature: str | None = None, scale_feature: str | None = None,
            brier_factor: float = 1.0, change_minute: int | None = None,
            model_key: str = "t:m") -> Iterator[ClosedBuckets]:
    """One ClosedBuckets per partition and topic per minute, in the order a live stream would
    send them. After `change_minute`, the named feature is all null / ×100 (all out of range), or
    the errors are `brier_factor` times larger."""
    version = baseline.model_version
    for i in range(n_minutes):
        minute = start_minute + i
        changed = change_minute is not None and minute >= change_minute
        for p in range(partitions):
            n = int(rng.poisson(events_per_s * 60 / partitions))
            features = {}
            for name, fb in sorted(baseline.features.items()):
                shares = fb.expected_shares()
                if changed and name == null_feature:
                    features[name] = (n, 0, 0)
                    continue
                counts = rng.multinomial(n, shares / shares.sum())
                missing = int(counts[-1])
                outside = int(counts[0] + counts[-2]) if fb.bins.kind == "numeric" else 0
                if changed and name == scale_feature and fb.bins.kind == "numeric":
                    outside = n - missing
                features[name] = (missing, 0, outside)
            preds = rng.beta(2, 5, size=n)
            health = HealthSums(n, features, ErrorSums().update_many(preds))
            yield ClosedBuckets(p, model_key, "f", minute + 1, health={(version, minute): health})
            k = int(rng.poisson(outcomes_per_min / partitions))
            mean = brier * (brier_factor if changed else 1.0)
            # squared errors of a calibrated-looking model: a scaled beta with the wanted mean
            errors = rng.beta(0.5, 0.5 / mean - 0.5, size=k) if k else np.zeros(0)
            yield ClosedBuckets(p, model_key, "o", minute + 1,
                                errors={(version, minute): ErrorSums().update_many(errors)} if k else {})


__all__ = ["WEEK_MINUTES", "minutes", "share_sums"]
