"""A global table's own writes read back from its changelog never take its values back in time
(`tables/own_writes.py`; regression: CI saw the run status route answer `completed`, then
`running`), and the table still ends with the last record of each key in the log."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from model_monitoring.tables.own_writes import OwnWrites


@dataclass(frozen=True)
class Record:
    key: str
    value: str


@dataclass
class World:
    """One worker writing keys of a global table while reading its changelog back, beside a
    foreign writer (another worker, after a rebalance) whose records only reach it through the
    log. The producer sends in order; acknowledgements and reads come whenever."""

    own: OwnWrites[Record] = field(default_factory=OwnWrites)
    store: dict[str, str] = field(default_factory=dict)
    log: list[Record] = field(default_factory=list)
    to_send: deque[tuple[str, int, str]] = field(default_factory=deque)  # key, seq, value
    to_ack: deque[tuple[str, int, int]] = field(default_factory=deque)  # key, seq, offset
    read: int = 0
    shown: dict[str, list[str]] = field(default_factory=dict)  # each key's values, as they changed
    n: int = 0

    def show(self, key: str, value: str) -> None:
        self.store[key] = value
        if not self.shown.setdefault(key, []) or self.shown[key][-1] != value:
            self.shown[key].append(value)

    def write(self, key: str) -> None:
        self.n += 1
        value = f"own{self.n}"
        self.show(key, value)
        self.to_send.append((key, self.own.wrote(key), value))

    def foreign(self, key: str) -> None:
        self.n += 1
        self.log.append(Record(key, f"foreign{self.n}"))

    def send(self) -> None:
        if self.to_send:
            key, seq, value = self.to_send.popleft()
            self.log.append(Record(key, value))
            self.to_ack.append((key, seq, len(self.log) - 1))

    def ack(self) -> None:
        if self.to_ack:
            key, seq, offset = self.to_ack.popleft()
            held = self.own.acknowledged(key, seq, offset)
            if held is not None:
                self.show(held.key, held.value)

    def read_one(self) -> None:
        if self.read < len(self.log):
            record = self.log[self.read]
            if self.own.read_back(record.key, self.read, record):
                self.show(record.key, record.value)
            self.read += 1

    def settle(self) -> None:
        while self.to_send or self.to_ack or self.read < len(self.log):
            self.send()
            self.ack()
            self.read_one()


KEYS = st.sampled_from(["a", "b"])
STEP = st.one_of(st.tuples(st.just("write"), KEYS), st.tuples(st.just("foreign"), KEYS),
                 st.just(("send",)), st.just(("ack",)), st.just(("read",)))


@settings(max_examples=400, deadline=None)
@given(st.lists(STEP, max_size=60))
def test_read_backs_never_take_a_value_back_and_the_last_record_wins(steps: list[tuple[Any, ...]]) -> None:
    w = World()
    for op, *args in steps:
        {"write": w.write, "foreign": w.foreign, "send": w.send, "ack": w.ack, "read": w.read_one}[op](*args)
    w.settle()
    offset = {record.value: i for i, record in enumerate(w.log)}
    for key, values in w.shown.items():
        offsets = [offset[v] for v in values]
        assert offsets == sorted(offsets), (key, values)  # never an older value after a newer one
    last = {record.key: record.value for record in w.log}
    assert w.store == last
    assert len(w.own) <= len(last)  # no entry outlives its key's last read-back for long


def test_the_ci_case_running_then_completed_read_back_late() -> None:
    """The tracker saves `running` (completion in the outbox), then `completed`; both records
    are read back after the second write: the value stays `completed`."""
    w = World()
    w.write("run")  # running
    w.send()
    w.ack()
    w.write("run")  # completed
    w.send()
    w.read_one()  # the read-back of `running`, before the second write's acknowledgement
    assert w.store["run"] == "own2"
    w.ack()
    w.read_one()
    assert w.store["run"] == "own2" and w.shown["run"] == ["own1", "own2"]
    assert len(w.own) == 0


def test_a_newer_foreign_record_read_while_the_own_write_is_unacknowledged_wins_at_the_ack() -> None:
    w = World()
    w.write("k")
    w.send()  # own at offset 0
    w.foreign("k")  # another worker's, after it, at offset 1
    w.read_one()
    w.read_one()
    assert w.store["k"] == "own1"  # order not known yet
    w.ack()
    assert w.store["k"] == "foreign2"


def test_the_table_applies_the_rule_to_its_changelog(tmp_path: Any) -> None:
    """Wiring: the run status GlobalTable of a real app (memory store, no broker) ignores the
    read-back of its own earlier write and applies another worker's later one."""
    from faust.types.tuples import TP, Message, RecordMetadata

    from model_monitoring.streams.app import create_monitor
    from model_monitoring.streams.settings import load_settings

    async def scenario() -> None:
        s = load_settings({"MODEL_MONITORING_JWT_SECRET": "x" * 32, "MODEL_MONITORING_STORE": "memory",
                           "MODEL_MONITORING_DATA_DIR": str(tmp_path)})
        table = create_monitor(s).tables.run_status
        pending = table.app.producer.buffer.pending
        key = b"0|r1"
        tp = TP(table.changelog_topic_name, 0)

        def read_back(offset: int, value: bytes) -> None:
            message = Message(tp.topic, 0, offset, 0.0, 0, None, key, value, None, key, value, tp)
            table.apply_changelog_batch([SimpleNamespace(message=message, key=key, value=value)])

        def acknowledge(offset: int) -> None:
            pending.get_nowait().set_result(RecordMetadata(tp.topic, 0, tp, offset, 0.0, 0))

        table[key] = b"running"
        table[key] = b"completed"
        acknowledge(10)
        acknowledge(11)
        await asyncio.sleep(0)  # the futures' done callbacks
        read_back(10, b"running")
        assert table[key] == b"completed"
        read_back(11, b"completed")
        read_back(12, b"failed")  # another worker's, later in the log
        assert table[key] == b"failed"

    asyncio.run(scenario())
