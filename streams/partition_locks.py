"""One fold at a time per partition: the features and the outcomes actors of a partition, and
the expiry timer, share its join entries and partials."""

from __future__ import annotations

import asyncio


class PartitionLocks:
    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}

    def lock(self, partition: int) -> asyncio.Lock:
        lock = self._locks.get(partition)
        if lock is None:
            lock = self._locks[partition] = asyncio.Lock()
        return lock
