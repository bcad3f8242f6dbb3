"""End offsets that are right on the embedded broker too.

Measured here: Tansu answers ListOffsets(latest) with the base offset of the partition's last
record batch + 1, not the last offset + 1 (five records produced as one batch at offsets 2–6:
ListOffsets says 3, a Fetch response's high watermark says 7). Faust's table recovery reads a
changelog up to that "highwater", so after a crash it would stop short of the last batch — and
its consistency check refuses to start when the local store holds an offset past it. The Fetch
response is right, so the end offset is read from a one-record fetch at the reported end − 1:
the broker returns the whole last batch and the true high watermark. On Apache Kafka the two
agree: with the `kafka` broker profile the probe is not run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka


async def true_end_offsets(consumer_kwargs: Mapping[str, Any], tps: Iterable[TopicPartition],
                           reported: Mapping[TopicPartition, int], timeout: float = 90.0
                           ) -> dict[TopicPartition, int]:
    """Correct reported end offsets with the high watermark of a fetch at end − 1.

    Every partition's end is corrected or this raises `TimeoutError` (after `timeout` seconds):
    it never returns a reported end it could not check. It did, after 5 s: on a loaded machine
    the probe (a new client: connection, metadata, fetch) took longer, and table recovery after
    a crash read the changelogs up to the reported ends — short of their last batch, whose
    writes (partials, join entries) were lost while their inputs stayed committed; the oracle
    reading a changelog stopped short alike. (A suspected cause of the SIGKILL test's rare
    shortfall of matched outcomes, not a proven one.)"""
    tps = [tp for tp in tps if reported.get(tp)]
    result = dict(reported)
    if not tps:
        return result
    probe = AIOKafkaConsumer(**consumer_kwargs, group_id=None, enable_auto_commit=False,
                             max_partition_fetch_bytes=64 * 1024, fetch_max_wait_ms=100)
    await probe.start()
    try:
        probe.assign(tps)
        for tp in tps:
            probe.seek(tp, max(0, reported[tp] - 1))
        pending = set(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while pending:
            batch = await probe.getmany(*pending, timeout_ms=200, max_records=1)
            for tp in list(pending):
                hw = probe.highwater(tp)
                if hw is not None and (tp in batch or hw >= reported[tp]):
                    result[tp] = max(reported[tp], hw)
                    pending.discard(tp)
            if pending and loop.time() >= deadline:
                raise TimeoutError(f"no high watermark in {timeout}s for {sorted(pending)}")
    finally:
        await probe.stop()
    return result


def correct_highwaters(app: Any) -> bool:
    """Whether this app's broker needs the correction: the embedded profile's (set by
    streams/app.py create_monitor; an app built elsewhere is corrected, which is always safe)."""
    return bool(getattr(app, "mm_correct_highwaters", True))


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, with highwaters read the way `true_end_offsets` does, and the
    worker consumer's fetch wait set by the app (`Settings.fetch_max_wait_ms`): faust builds it
    with 1,500 ms, and the embedded broker answers a fetch only when its wait is over, data or
    not (measured: a message produced to an idle consumer arrives ~0.55 s later on average
    with 1,500 ms, 3 ms with 100 ms), a delay each hop of the weekly run paid."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "mm_fetch_max_wait_ms", None)
        if wait is not None:
            # read by AIOKafkaConsumer.start() when it builds its Fetcher (aiokafka 0.12)
            consumer._fetch_max_wait_ms = int(wait)
        return consumer

    async def _highwaters(self, partitions: list[Any]) -> Mapping[Any, int]:
        if self.consumer.in_transaction:
            # exactly_once (Kafka only): faust reads aiokafka's `last_stable_offset`, which is
            # known only once a fetch of that partition has returned (None before, and each
            # assignment starts afresh), and faust's recovery takes None as "nothing to recover".
            # ListOffsets from this read_committed consumer answers the last stable offset itself.
            consumer = self._ensure_consumer()
            return cast(Mapping[Any, int], await consumer.end_offsets(partitions))
        reported = dict(await super()._highwaters(partitions))
        if not correct_highwaters(self.app):
            return reported  # the kafka profile: Apache Kafka's ListOffsets is right
        conf = self.app.conf
        # this thread belongs to the aiokafka transport; its interface type (TransportT) has no port
        transport = cast(faust_aiokafka.Transport, self.transport)
        kwargs: dict[str, Any] = dict(
            bootstrap_servers=faust_aiokafka.server_list(transport.url, transport.default_port),
            **faust_aiokafka.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context))
        corrected = await true_end_offsets(kwargs, [TopicPartition(tp.topic, tp.partition) for tp in partitions],
                                           {TopicPartition(tp.topic, tp.partition): v for tp, v in reported.items()
                                            if v is not None})
        return {tp: corrected.get(TopicPartition(tp.topic, tp.partition), v) for tp, v in reported.items()}
