"""MODEL_MONITORING_PROCESSING_GUARANTEE: at least once by default; exactly once only on a broker
with transactions, handed to faust as `processing_guarantee`; the project's Topic publishes
through the transaction manager then, without the event-loop turns of asking for it; and the
project's transaction manager (streams/transactions.py) commits what was written."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP
from faust.types.enums import ProcessingGuarantee
from pydantic import ValidationError

import model_monitoring.streams.transport
from model_monitoring.agents.service import build_app
from model_monitoring.streams.app import faust_settings
from model_monitoring.streams.settings import load_settings
from model_monitoring.streams.transactions import TransactionManager

KAFKA = {"MODEL_MONITORING_BROKER_PROFILE": "kafka"}


def test_at_least_once_is_the_default_on_every_broker() -> None:
    for env in ({}, KAFKA):
        s = load_settings(env)
        assert s.processing_guarantee == "at_least_once"
        assert faust_settings(s)["processing_guarantee"] == "at_least_once"


def test_exactly_once_reaches_faust_on_kafka(tmp_path: Path) -> None:
    s = load_settings({**KAFKA, "MODEL_MONITORING_PROCESSING_GUARANTEE": "exactly_once",
                       "MODEL_MONITORING_DATA_DIR": str(tmp_path), "MODEL_MONITORING_STORE": "memory",
                       "MODEL_MONITORING_JWT_SECRET": "x" * 32})
    assert s.processing_guarantee == "exactly_once"
    app = build_app(s).app
    assert app.conf.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE


def test_exactly_once_is_refused_on_the_embedded_broker() -> None:
    with pytest.raises(ValidationError, match="InitProducerId"):
        load_settings({"MODEL_MONITORING_PROCESSING_GUARANTEE": "exactly_once"})
    with pytest.raises(ValidationError, match="InitProducerId"):
        load_settings({"MODEL_MONITORING_PROCESSING_GUARANTEE": "exactly_once",
                       "MODEL_MONITORING_BROKER_PROFILE": "embedded"})


def test_exactly_once_is_refused_on_fausts_own_transport() -> None:
    with pytest.raises(ValidationError, match="MODEL_MONITORING_KAFKA_TRANSPORT=mmkafka"):
        load_settings({**KAFKA, "MODEL_MONITORING_PROCESSING_GUARANTEE": "exactly_once",
                       "MODEL_MONITORING_KAFKA_TRANSPORT": "kafka"})


def test_an_unknown_guarantee_is_refused() -> None:
    with pytest.raises(ValidationError):
        load_settings({**KAFKA, "MODEL_MONITORING_PROCESSING_GUARANTEE": "exactly-once"})


async def test_topic_publishes_through_the_transaction_manager_without_yielding() -> None:
    app = faust.App("guarantee-topic-test", broker="mmkafka://127.0.0.1:1", store="memory://",
                    processing_guarantee="exactly_once", Topic=model_monitoring.streams.transport.Topic)
    app.in_worker = True  # faust's transactions are a worker's: in_transaction needs both
    assert app.in_transaction
    coro = app.topic("changelog-like")._get_producer()
    with pytest.raises(StopIteration) as done:
        coro.send(None)  # faust's own Topic suspends three times here (maybe_start_producer)
    assert done.value.value is app.consumer.transactions


# ---------------------------------------------------------------- the transaction manager's fixes
class FakeTransactional:
    """What faust's Producer calls on an aiokafka transactional producer."""

    def __init__(self, name: str, calls: list[tuple[str, str]]) -> None:
        self.name, self.calls = name, calls
        self._txn_manager = self  # aiokafka's transaction state: begun when faust creates it
        self.open = True

    def is_in_transaction(self) -> bool:
        return self.open

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        self.calls.append(("offsets", self.name))

    async def commit_transaction(self) -> None:
        assert self.open, "aiokafka raises: no transaction in progress"
        self.open = False
        self.calls.append(("commit", self.name))

    async def begin_transaction(self) -> None:
        self.open = True
        self.calls.append(("begin", self.name))


def exactly_once_app(name: str) -> faust.App:
    app = faust.App(name, broker="mmkafka://127.0.0.1:1", store="memory://",
                    processing_guarantee="exactly_once", Topic=model_monitoring.streams.transport.Topic)
    app.in_worker = True
    return app


def with_transactions(app: faust.App, names: list[str], calls: list[tuple[str, str]]) -> TransactionManager:
    producer = app.producer
    # instance attributes: faust keeps these dicts on the class, shared by every producer
    producer._transaction_producers = {n: FakeTransactional(n, calls) for n in names}  # type: ignore[attr-defined]
    producer._trn_locks = {n: asyncio.Lock() for n in names}  # type: ignore[attr-defined]
    app.assignor._topic_groups = {"features": 0}
    tm = app.consumer.transactions
    assert isinstance(tm, TransactionManager)
    return tm


async def test_the_project_transaction_manager_is_the_one_faust_creates() -> None:
    app = exactly_once_app("guarantee-tm-test")
    assert type(app.consumer.transactions) is TransactionManager


async def test_a_commit_commits_the_transactions_without_offsets_too() -> None:
    calls: list[tuple[str, str]] = []
    app = exactly_once_app("guarantee-commit-test")
    tm = with_transactions(app, ["guarantee-commit-test-0-0", "guarantee-commit-test-0-1",
                                 "guarantee-commit-test-1-0"], calls)
    await tm.commit({TP("features", 0): 42})
    # the project's: the others (a global table's changelog, an idle partition), without offsets
    assert sorted(calls[:4]) == sorted([("commit", "guarantee-commit-test-0-1"), ("begin", "guarantee-commit-test-0-1"),
                                        ("commit", "guarantee-commit-test-1-0"), ("begin", "guarantee-commit-test-1-0")])
    # faust's: the transaction of the offsets' partition, with its offsets
    assert calls[4:] == [("offsets", "guarantee-commit-test-0-0"), ("commit", "guarantee-commit-test-0-0"),
                         ("begin", "guarantee-commit-test-0-0")]
    calls.clear()
    await tm.commit({TP("features", 0): 43}, start_new_transaction=False)  # stopping: no new ones
    assert ("begin", "guarantee-commit-test-0-1") not in calls and ("commit", "guarantee-commit-test-0-1") in calls


async def test_regression_offsets_commit_after_every_other_write() -> None:
    """Regression (the exactly-once SIGKILL test on Apache Kafka, on a loaded machine): the other
    transactions were committed after the offsets. A baseline's record is consumed from a
    partition of the baselines topic and written to the global table's one-partition changelog,
    in another transaction: the worker was killed between the two commits, the baselines'
    offsets stayed committed and their changelog writes were aborted, and the restarted worker
    binned every feature without its baseline. Now the offsets go last: after the plain
    producer's messages (dead letters, outputs) are flushed and every other transaction (the
    global table's) is committed."""
    calls: list[tuple[str, str]] = []
    app = exactly_once_app("guarantee-order-test")
    tm = with_transactions(app, ["guarantee-order-test-0-7", "guarantee-order-test-1-0"], calls)

    class Plain:
        async def flush(self) -> None:
            calls.append(("flush", "plain"))

    app.producer._producer = Plain()  # type: ignore[attr-defined]
    await tm.commit({TP("features", 7): 1})  # the baselines record's partition (group 0)
    assert calls == [("flush", "plain"),
                     ("commit", "guarantee-order-test-1-0"), ("begin", "guarantee-order-test-1-0"),
                     ("offsets", "guarantee-order-test-0-7"), ("commit", "guarantee-order-test-0-7"),
                     ("begin", "guarantee-order-test-0-7")]


async def test_a_commit_with_no_offsets_commits_the_open_transactions_once() -> None:
    calls: list[tuple[str, str]] = []
    app = exactly_once_app("guarantee-idle-test")
    names = ["guarantee-idle-test-0-0", "guarantee-idle-test-0-1"]
    with_transactions(app, names, calls)
    consumer = app.consumer
    # nothing acknowledged since the last commit: faust alone would commit nothing
    assert await consumer.force_commit() is False
    assert sorted(calls) == sorted([("commit", n) for n in names] + [("begin", n) for n in names])
    calls.clear()
    await consumer.commit_and_end_transactions()  # the stop: committed, none begun again
    assert sorted(calls) == sorted(("commit", n) for n in names)
    calls.clear()
    await consumer.commit_and_end_transactions()  # a second stop-time commit: none open, none committed
    assert calls == []


async def test_a_commit_first_hands_over_what_waits_in_the_producer_buffer() -> None:
    calls: list[tuple[str, str]] = []
    app = exactly_once_app("guarantee-buffer-test")
    tm = with_transactions(app, ["guarantee-buffer-test-0-0"], calls)

    class Channel:
        async def publish_message(self, fut: Any, wait: bool = False) -> None:
            calls.append(("publish", fut.name))

    class Pending:
        def __init__(self, name: str) -> None:
            self.name = name
            self.message = SimpleNamespace(channel=Channel())

    for name in ("a", "b", "c"):
        app.producer.buffer.pending.put_nowait(Pending(name))
    await tm.commit({TP("features", 0): 1})
    assert calls[:4] == [("publish", "a"), ("publish", "b"), ("publish", "c"),
                         ("offsets", "guarantee-buffer-test-0-0")]  # before the offsets
    assert app.producer.buffer.pending.empty()


async def test_a_message_to_a_partition_without_a_transaction_here_goes_out_plain() -> None:
    calls: list[tuple[str, str]] = []
    app = exactly_once_app("guarantee-send-test")
    tm = with_transactions(app, ["guarantee-send-test-0-0"], calls)
    sent: list[tuple[str, int | None, str | None]] = []

    async def send(topic: str, key: Any, value: Any, partition: int | None, timestamp: Any, headers: Any,
                   *, transactional_id: str | None = None) -> None:
        sent.append((topic, partition, transactional_id))

    app.consumer.key_partition = lambda topic, key, partition=None: partition  # type: ignore[method-assign]
    app.producer.send = send  # type: ignore[method-assign]
    await tm.send("features", b"k", b"v", 0, None, None)        # ours: in its transaction
    await tm.send("features", b"k", b"v", 1, None, None)        # another worker's partition
    await tm.send("ml.model.drift.detected", b"k", b"v", 0, None, None)  # a topic not consumed
    assert sent == [("features", 0, "guarantee-send-test-0-0"), ("features", 1, None),
                    ("ml.model.drift.detected", 0, None)]
