"""Producers' partitioners that are not the service's, for producing mispartitioned traffic."""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence


def crc32_partition(key: bytes | None, partitions: int, rng: random.Random | None = None) -> int:
    """librdkafka's default partitioner, `consistent_random` (confluent-kafka, kcat): CRC-32 of
    the key modulo the partition count; a random partition for a null key."""
    if key is None:
        return (rng or random).randrange(partitions)
    return zlib.crc32(key) % partitions


class Crc32Partitioner:
    """`crc32_partition` as an aiokafka producer's `partitioner` (the same signature as its
    DefaultPartitioner: key, all partitions sorted, available ones)."""

    def __call__(self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
        return all_partitions[crc32_partition(key, len(all_partitions))]
