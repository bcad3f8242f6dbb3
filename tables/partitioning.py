"""The partition a predictionId belongs to: the service's own hash, whatever the producers used.

The join is local to a partition, so a prediction and its outcome must be folded by the same
one. The producers are not ours: Java clients and aiokafka hash the key with murmur2, librdkafka
clients (confluent-kafka, kcat) with CRC32 (`consistent_random`), and a producer may key an
envelope by its first record or not key at all. So the service decides for itself: a record
belongs to partition `murmur2(predictionId) mod n`, Kafka's default partitioner applied to the
predictionId's UTF-8 bytes — the partition that a Java or aiokafka producer keyed by
predictionId already picks, so their traffic needs no forwarding. A record that arrived
elsewhere is forwarded there (`tables/forwarding.py`, `streams/repartition.py`).

Every record's partition is computed, forwarded or not: one at a time in Python, murmur2 of a
36-byte UUID costs about as much as validating the record, so a batch's are computed together
with numpy (`partitions_of_predictions`)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

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


# a group of keys of one length smaller than this is hashed one key at a time (numpy's per-call
# overhead is larger than the work)
VECTOR_MIN = 8
_M = np.uint32(M)


def murmur2_many(keys: Sequence[bytes]) -> list[int]:
    """`murmur2` of each key, the keys of one length hashed together in uint32 arrays (numpy's
    array arithmetic wraps modulo 2**32, as the scalar version masks)."""
    out = [0] * len(keys)
    by_length: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(i)
    for length, indexes in by_length.items():
        if len(indexes) < VECTOR_MIN:
            for i in indexes:
                out[i] = murmur2(keys[i])
            continue
        data = np.frombuffer(b"".join(keys[i] for i in indexes), dtype=np.uint8).reshape(len(indexes), length)
        h = np.full(len(indexes), (SEED ^ length) & MASK, dtype=np.uint32)
        whole = length - length % 4
        words = np.ascontiguousarray(data[:, :whole]).view("<u4").astype(np.uint32)
        for j in range(whole // 4):
            k = words[:, j] * _M
            k ^= k >> np.uint32(24)
            k *= _M
            h *= _M
            h ^= k
        extra = length - whole
        if extra == 3:
            h ^= data[:, whole + 2].astype(np.uint32) << np.uint32(16)
        if extra >= 2:
            h ^= data[:, whole + 1].astype(np.uint32) << np.uint32(8)
        if extra >= 1:
            h ^= data[:, whole].astype(np.uint32)
            h *= _M
        h ^= h >> np.uint32(13)
        h *= _M
        h ^= h >> np.uint32(15)
        for i, value in zip(indexes, h.tolist(), strict=True):
            out[i] = value
    return out


def partitions_of_predictions(prediction_ids: Sequence[str], partitions: int) -> list[int]:
    """`partition_of_prediction` of each predictionId."""
    return [(h & 0x7FFFFFFF) % partitions for h in murmur2_many([p.encode() for p in prediction_ids])]
