"""The table writers' gate (streams/write_gate.py): closed by a revocation, which waits for the
writers inside it; a writer that comes while it is closed waits and goes on once it opens."""

from __future__ import annotations

import asyncio

import pytest

from model_monitoring.streams.write_gate import WriteGate, write_gate


async def test_a_writer_inside_holds_the_closing_and_a_new_one_waits_for_the_opening() -> None:
    gate = WriteGate()
    order: list[str] = []
    inside, release = asyncio.Event(), asyncio.Event()

    async def writer(name: str, hold: asyncio.Event | None = None) -> None:
        async with gate.writing():
            order.append(f"{name} in")
            inside.set()
            if hold is not None:
                await hold.wait()
            order.append(f"{name} out")

    first = asyncio.create_task(writer("first", release))
    await inside.wait()
    gate.close()
    second = asyncio.create_task(writer("second"))
    closing = asyncio.create_task(gate.wait_idle(5))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not closing.done() and gate.busy == 1 and order == ["first in"]
    release.set()
    assert await closing is True
    assert order == ["first in", "first out"]  # the second waits at the closed gate
    for _ in range(5):
        await asyncio.sleep(0)
    assert not second.done() and gate.busy == 0
    gate.open()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert order == ["first in", "first out", "second in", "second out"]


async def test_the_wait_for_the_writers_is_bounded() -> None:
    gate = WriteGate()
    release = asyncio.Event()

    async def stuck() -> None:
        async with gate.writing():
            await release.wait()

    task = asyncio.create_task(stuck())
    await asyncio.sleep(0)
    gate.close()
    assert await gate.wait_idle(0.05) is False and gate.busy == 1
    release.set()
    await task
    assert await gate.wait_idle(0.05) is True and gate.busy == 0


async def test_a_writer_that_raises_leaves_the_gate() -> None:
    gate = WriteGate()

    async def failing() -> None:
        async with gate.writing():
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await failing()
    assert gate.busy == 0 and await gate.wait_idle(0.01)


def test_one_gate_per_app() -> None:
    class App:
        pass

    a, b = App(), App()
    assert write_gate(a) is write_gate(a) and write_gate(a) is not write_gate(b)
