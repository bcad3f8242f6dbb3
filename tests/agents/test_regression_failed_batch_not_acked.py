"""Regression: records lost after a crash and restart under load (the SIGKILL test on a loaded
machine: a range of one partition's records never counted). An ingest actor that failed in the
middle of a batch (a broker error) still acknowledged the whole batch: faust's `take_events`
acknowledges in the `finally` around its `yield`, however the agent leaves the batch. faust's
supervisor then restarted the actor on the same stream, after that batch, so the batch was never
delivered again, and its offsets, acknowledged, were committed: the records of it not folded yet
were gone. A failed batch must stay unacknowledged, and the worker must stop (so that a restart
reads it again from the committed offset) rather than go on after it.

The real ingest agent; its fold fails the way a broker failure does (the producer is not
running: the join entries cannot be flushed before the partials are written)."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.agents.test_ingest_agent import UNREACHABLE, make_monitor, record
from tests.support.waiting import until


async def test_a_batch_that_failed_is_not_acknowledged_and_stops_the_worker(tmp_path: Path) -> None:
    m = make_monitor(tmp_path, "failed-batch", UNREACHABLE)  # the producer is never started
    agent = m.app.agents["ingest-features"]
    async with agent.test_context() as ctx:
        # one batch (MODEL_MONITORING_BATCH_SIZE=3 in make_monitor)
        events = [await ctx.put(key=f"p{i}".encode(), value=orjson.dumps(record(i)), wait=False)
                  for i in range(3)]
        await until(lambda: m.app.crash_reason is not None, 10,
                    failure=lambda: f"the app did not stop; acked {[e.message.acked for e in events]}")
        assert isinstance(m.app.crash_reason, RuntimeError)
        assert "Producer not Running" in str(m.app.crash_reason)
        # the failed actor left the supervisor: nothing restarts it on the stream it failed on
        crashed = [a for a in ctx._actors if a.crashed]
        assert crashed
        assert ctx.supervisor is not None
        assert not [a for a in crashed if a in ctx.supervisor._services]
    # the agent and its streams stopped (their buffering generators closed): still not acknowledged
    assert [e.message.acked for e in events] == [False, False, False]
    assert not m.tables.partials.data
