"""A mergeable histogram of label lag (outcome time − prediction time).

Buckets: one hour wide below 48 hours, one day wide from 2 days on (bucket 48 is [2 d, 3 d)),
so a quantile read from it is within half a bucket of the exact one: ±30 minutes below 2 days,
±12 hours above. Day edges are exact, so "labelled within d days" (label coverage at a cohort's
age, tables/label_health.py) is an exact count for any whole number d >= 2. A negative lag (the
outcome came first) counts in bucket 0."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
HOUR_BUCKETS = 48


def bucket_of(lag_ms: np.ndarray) -> np.ndarray:
    lag = np.maximum(np.asarray(lag_ms, dtype=np.int64), 0)
    return np.where(lag < HOUR_BUCKETS * HOUR_MS, lag // HOUR_MS, lag // DAY_MS + (HOUR_BUCKETS - 2))


def bucket_bounds_ms(bucket: int) -> tuple[int, int]:
    if bucket < HOUR_BUCKETS:
        return bucket * HOUR_MS, (bucket + 1) * HOUR_MS
    day = bucket - (HOUR_BUCKETS - 2)
    return day * DAY_MS, (day + 1) * DAY_MS


@dataclass(frozen=True)
class LagHistogram:
    counts: Mapping[int, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def update_many(self, lags_ms: Sequence[int] | np.ndarray) -> LagHistogram:
        codes, numbers = np.unique(bucket_of(np.asarray(lags_ms, dtype=np.int64)), return_counts=True)
        return self.merge(LagHistogram({int(c): int(k) for c, k in zip(codes, numbers, strict=True)}))

    def merge(self, other: LagHistogram) -> LagHistogram:
        out = dict(self.counts)
        for bucket, count in other.counts.items():
            out[bucket] = out.get(bucket, 0) + count
        return LagHistogram(out)

    def quantile_hours(self, q: float) -> float | None:
        """The midpoint of the bucket holding the q-quantile (numpy's `inverted_cdf`: the smallest
        lag with at least ⌈q·n⌉ lags at or below it); None when empty."""
        n = self.n
        if n == 0:
            return None
        rank = max(1, int(np.ceil(q * n)))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                low, high = bucket_bounds_ms(bucket)
                return (low + high) / 2 / HOUR_MS
        raise AssertionError("unreachable")

    def within_days(self, days: int) -> int:
        """How many lags are under `days` days (exact for whole days >= 2; 0 for days <= 0)."""
        if days <= 0:
            return 0
        limit = days * DAY_MS
        return sum(c for b, c in self.counts.items() if bucket_bounds_ms(b)[1] <= limit)

    def to_json(self) -> dict[str, int]:
        return {str(b): c for b, c in sorted(self.counts.items())}

    @classmethod
    def from_json(cls, doc: object) -> LagHistogram:
        if not isinstance(doc, Mapping):
            raise ValueError(f"a lag histogram must be an object, got {doc!r}")
        return cls({int(b): int(c) for b, c in doc.items()})
