"""The ingest fold's tables as dicts of bytes (the changelog-backed tables' stand-ins), for
unit tests that drive `IngestFold` batch by batch: each test file adds how it applies a batch
(with or without lost writes) and what it reads back."""

from __future__ import annotations

from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.ingest import IngestFold
from model_monitoring.tables.join_buffer import JoinEntry
from model_monitoring.tables.partial import PartialState

DAY = 86_400_000


class FoldStore:
    """The partials and join buffer as dicts of bytes, with the partition's event-time marks."""

    def __init__(self, baseline: Baseline, *, retention_ms: int = 35 * DAY,
                 join_ttl_ms: int | None = None) -> None:
        self.baseline = baseline
        self.retention_ms, self.join_ttl_ms = retention_ms, join_ttl_ms
        self.partials: dict[bytes, bytes] = {}
        self.joins: dict[bytes, bytes] = {}
        self.meta: dict[str, int] = {}

    def fold(self) -> IngestFold:
        return IngestFold(0, bucket_ms=DAY, retention_ms=self.retention_ms, join_ttl_ms=self.join_ttl_ms,
                          baseline_for=lambda t, m, v: self.baseline)

    def get_partial(self, k: bytes) -> PartialState | None:
        raw = self.partials.get(k)
        return PartialState.from_bytes(raw) if raw else None

    def get_join(self, k: bytes) -> JoinEntry | None:
        raw = self.joins.get(k)
        return JoinEntry.from_bytes(raw) if raw else None
