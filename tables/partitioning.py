"""The partition a predictionId belongs to: the service's own hash, whatever the producers used.

The join is local to a partition, so a prediction and its outcome must be folded by the same
one. The producers are not ours: Java clients and aiokafka hash the key with murmur2, librdkafka
clients (confluent-kafka, kcat) with CRC32 (`consistent_random`), and a producer may key an
envelope by its first record or not key at all. So the service decides for itself: a record
belongs to partition `murmur2(predictionId) mod n`, Kafka's default partitioner applied to the
predictionId's UTF-8 bytes — the partition that a Java or aiokafka producer keyed by
predictionId already picks, so their traffic needs no forwarding. A record that arrived
elsewhere is forwarded there (`tables/forwarding.py`, `streams/repartition.py`)."""

from __future__ import annotations

import struct

SEED = 0x9747B28C
M = 0x5BD1E995
MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 as Kafka's Java client computes it (`Utils.murmur2`), as an unsigned 32-bit
    value (aiokafka's `partitioner.murmur2` gives the same)."""
    length = len(data)
    h = (SEED ^ length) & MASK
    whole = length - length % 4
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * M) & MASK
        k ^= k >> 24
        k = (k * M) & MASK
        h = ((h * M) & MASK) ^ k
    extra = length - whole
    if extra == 3:
        h ^= data[whole + 2] << 16
    if extra >= 2:
        h ^= data[whole + 1] << 8
    if extra >= 1:
        h ^= data[whole]
        h = (h * M) & MASK
    h ^= h >> 13
    h = (h * M) & MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a non-null key: `toPositive(murmur2(key)) % n`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def partition_of_prediction(prediction_id: str, partitions: int) -> int:
    """The partition whose fold holds this predictionId's join entry."""
    return partition_for(prediction_id.encode(), partitions)
