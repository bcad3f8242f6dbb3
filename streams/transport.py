"""The project's Kafka transport, `mmkafka://`: faust's aiokafka transport with a consumer whose
drain loop hands a message to the streams without spawning tasks for it while flow is active.

Why: faust's `Consumer._drain_messages` delivers every message through
`wait_first(callback(message), suspend_flow.wait())` — four tasks and an `asyncio.wait` per
message, so that a rebalance (`stop_flow()` sets `suspend_flow`) can interrupt a delivery blocked
on a full stream buffer or on flow control. That machinery is the per-message ceiling of a worker
(DESIGN.md). Almost every delivery completes without ever suspending, so this consumer runs the
delivery coroutine eagerly, up to its first suspension (as Python 3.12's eager tasks do); only a
delivery that actually blocks is finished faust's way, in a task raced against `suspend_flow`
and the consumer's stop/crash events. With flow already suspended it uses faust's path as is.

Installed through faust's own extension point (the `faust.transports` entry point of
pyproject.toml, `broker="mmkafka://host:port"`); no library code is patched.

`Topic` is the publishing side of the same per-message cost, for the app's `Topic` setting:
faust's `Topic.publish_message` asks `app.maybe_start_producer()` for the producer on every
message (each table write's changelog message), and that method is a mode `stampede`, which
awaits `asyncio.sleep(0)` three times per call — three event-loop turns per message, and the
Kafka client wakes in between to send a produce request every two or three messages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping
from typing import Any, cast

import faust
from faust.transport import conductor as faust_conductor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP, Message, ProducerT
from mode import Service, ServiceT

from model_monitoring.streams.producer_buffer import drain
from model_monitoring.streams.transactions import TransactionManager
from model_monitoring.streams.write_gate import write_gate

Delivery = Callable[[Message], Coroutine[Any, Any, Any]]


class SuspendedDelivery:
    """The rest of a coroutine that already ran up to its first suspension (`yielded` is what it
    yielded there), as an awaitable a task can run: sends, throws (cancellation) and close pass
    straight through to the coroutine, as `await` would pass them."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self.coro, self.yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - cancellation goes to the coroutine
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


def await_chain(task: asyncio.Task[Any], limit: int = 40) -> list[str]:
    """Where a suspended task waits: its coroutines from the outermost in, `dir/file.py:line
    function` each (compiled coroutines, which keep no frame, end the chain)."""
    out: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and len(out) < limit:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            break
        path = "/".join(frame.f_code.co_filename.rsplit("/", 2)[-2:])
        out.append(f"{path}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return out


class Consumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer; only the per-message delivery of the drain loop differs."""

    #: deliveries that suspended and were finished in a task raced against `suspend_flow`
    suspended_deliveries: int = 0
    #: seconds a commit waits for the producer buffer's earlier messages to reach the client
    BUFFER_DRAIN_TIMEOUT: float = 60.0
    #: seconds a revocation waits at most for the table writes under way (streams/write_gate.py)
    WRITE_DRAIN_TIMEOUT: float = 30.0
    #: seconds between two reports of the same partition's stalled commits
    STALL_REPORT_INTERVAL: float = 60.0
    #: seconds after which a commit still under way is reported, with where it waits (again
    #: every as many seconds until it ends)
    SLOW_COMMIT_REPORT: float = 90.0
    _stall_reported: dict[TP, float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stall_reported = {}

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        # the consumer thread whose highwaters are right on the embedded broker too
        # (streams/highwater.py: table recovery reads changelogs up to them)
        from model_monitoring.streams.highwater import ConsumerThread

        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def deliver(self, callback: Delivery, message: Message) -> None:
        """Hand one message to the conductor; a rebalance can still interrupt a blocked one."""
        if not self.flow_active:
            # faust's own path: the delivery loses the race against the suspended flow
            await self.wait_first(callback(message), self.suspend_flow.wait())
            return
        coro = callback(message)
        try:
            yielded = coro.send(None)
        except StopIteration:
            return  # delivered without suspending: the common case, no task, no wait
        self.suspended_deliveries += 1
        # blocked (full stream buffer, flow control, producer buffer): finish it in a task
        # exactly as faust would, so stop_flow() cancels it instead of waiting for it
        await self.wait_first(SuspendedDelivery(coro, yielded), self.suspend_flow.wait())

    # ------------------------------------------------------------------ paused means paused
    # faust (0.15.3) lets a stream partition whose buffer filled up (`on_buffer_full`: taken off
    # the active set, put in `_buffered_partitions`) slip past a pause: `on_buffer_drop` puts it
    # back in the active set whether paused or not, `getmany` yields the records of a buffered
    # partition even when it is not active, and nothing takes it out of `_buffered_partitions`
    # at a rebalance. A worker that fell behind (full buffers) when a rebalance came (a broker
    # stall ending its session) then fetched those partitions during table recovery, from the
    # position the client reset them to, before their seek: the recovery's
    # `flow_control.resume()` cleared some of those records from the stream queues while later
    # ones were folded, and the watermarks (the highest offset folded per key) then skipped the
    # cleared ones when they came again (issue 10's broker stall, seen with a trace of every
    # delivery, acknowledgement, seek and clearing). A paused partition now stays paused until
    # it is resumed.

    def pause_partitions(self, tps: Iterable[TP]) -> None:
        tpset = set(tps)
        super().pause_partitions(tpset)
        self._buffered_partitions.difference_update(tpset)

    def on_buffer_full(self, tp: TP) -> None:
        if tp not in self._paused_partitions:  # a paused partition fetches nothing already
            super().on_buffer_full(tp)

    def on_buffer_drop(self, tp: TP) -> None:
        if tp in self._paused_partitions:
            self._buffered_partitions.discard(tp)  # resumed, it becomes active as any other
            return
        super().on_buffer_drop(tp)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Close the table writers' gate and let the writes under way finish first
        (streams/write_gate.py), then faust's revocation."""
        self._buffered_partitions.difference_update(revoked)
        gate = write_gate(self.app)
        gate.close()
        timeout = min(self.WRITE_DRAIN_TIMEOUT, float(self.app.conf.broker_rebalance_timeout) / 2)
        if not await gate.wait_idle(timeout):
            self.log.warning("rebalance: %d table writer(s) still busy after %.0f s; revoking anyway",
                             gate.busy, timeout)
        await super().on_partitions_revoked(revoked)

    async def _commit_offsets(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        """faust's commit of `offsets`; at least once, only after every table write queued before
        it reached the Kafka client (streams/producer_buffer.py): faust's own flush may leave
        some behind. Not drained in time, nothing is committed now: the next commit tries again.
        A commit that does not happen (skipped, raised, or cancelled by a rebalance or a stop
        while it waited) gives its partitions' acked offsets back (`_give_back_acked`)."""
        try:
            if not self.in_transaction:
                buffer = cast(ProducerBuffer, self.app.producer.buffer)
                if not await drain(buffer, timeout=self.BUFFER_DRAIN_TIMEOUT):
                    self.log.warning("commit skipped: the producer buffer did not drain in %.0f s (%d queued); "
                                     "the offsets commit at a later commit", self.BUFFER_DRAIN_TIMEOUT, buffer.size)
                    self._give_back_acked(offsets)
                    return False
            return await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction)
        except BaseException:
            self._give_back_acked(offsets)
            raise

    def _give_back_acked(self, offsets: Mapping[TP, int]) -> None:
        """faust's `_new_offset` took each partition's acked offsets below its commit offset off
        its list before the commit; a commit that does not happen gives them back. Lost, the
        partition's next acked offset would lie more than one past its last commit, and faust
        would never commit it again (`stalled_commits`)."""
        for tp, offset in offsets.items():
            if tp not in self._acked:  # revoked meanwhile: faust dropped its bookkeeping
                continue
            committed = self._committed_offset[tp]
            start = committed + 1 if committed else max(offset - 1, 0)
            index, acked = self._acked_index[tp], self._acked[tp]
            back = [o for o in range(start, offset) if o not in index]
            index.update(back)
            acked.extend(back)
            acked.sort()

    def stalled_commits(self) -> dict[TP, tuple[int, int, int]]:
        """Partitions whose acknowledged offsets cannot commit: faust commits a partition's acked
        offsets only from the one after its last commit on (`_new_offset`: a first acked offset
        more than one past the committed one returns nothing, for ever if the offsets between
        never get acked; streams/recovery.py mends the hole that was seen in production:
        records that table recovery cleared from the stream queues). {tp: (committed, lowest
        acked, acked count)}."""
        stalled = {}
        for tp, acked in self._acked.items():
            committed = self._committed_offset[tp]
            if not (acked and committed):
                continue
            # the offsets the consumer skipped (transaction markers, aborted records) count as
            # acknowledged: `_new_offset` merges them in first
            lowest, highest = min(acked), max(acked)
            gaps = self._gap.get(tp)
            if gaps:
                lowest = min([lowest, *(interval.begin for interval in gaps if interval.begin <= highest)])
            if lowest - committed > 1:
                stalled[tp] = (committed, lowest, len(acked))
        return stalled

    def _report_stalled_commits(self) -> None:
        now = time.monotonic()
        try:
            stalled = self.stalled_commits()
        except Exception:  # noqa: BLE001 - a diagnostic never stands in the way of a commit
            self.log.exception("could not check for offsets that cannot commit")
            return
        for tp, (committed, lowest, n) in stalled.items():
            if now - self._stall_reported.get(tp, -1e9) >= self.STALL_REPORT_INTERVAL:
                self._stall_reported[tp] = now
                self.log.warning("offsets of %s cannot commit: committed %d, lowest acknowledged %d "
                                 "(%d acknowledged waiting); the offsets between were never acknowledged",
                                 tp, committed, lowest, n)

    async def _commit_tps(self, tps: Iterable[TP], start_new_transaction: bool) -> bool:
        """faust's commit; with transactions, one with no input offsets to commit still commits
        the writes made since the last (streams/transactions.py, defect 4). Partitions whose
        acknowledged offsets cannot commit are logged (`stalled_commits`)."""
        self._report_stalled_commits()
        task, loop, started = asyncio.current_task(), asyncio.get_running_loop(), time.monotonic()
        watchdog: list[asyncio.TimerHandle] = []

        def report_slow() -> None:
            if task is None or task.done():
                return
            self.log.warning("commit under way for %.0f s, waiting at: %s", time.monotonic() - started,
                             " <- ".join(reversed(await_chain(task))) or "?")
            watchdog[:] = [loop.call_later(self.SLOW_COMMIT_REPORT, report_slow)]

        watchdog.append(loop.call_later(self.SLOW_COMMIT_REPORT, report_slow))
        try:
            committed = await super()._commit_tps(tps, start_new_transaction=start_new_transaction)
            if not committed and self.in_transaction:
                await cast(TransactionManager, self.transactions).commit_open(start_new_transaction)
            return committed
        finally:
            for handle in watchdog:
                handle.cancel()

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover - see tests
        # faust-streaming 0.15.3 `Consumer._drain_messages`, line for line, except that the
        # delivery goes through `self.deliver` instead of `wait_first` for every message.
        # faust types the callback as returning an Awaitable; it is the conductor's coroutine
        # function, whose coroutine `deliver` drives with send()
        callback = cast(Delivery, self.callback)
        deliver = self.deliver
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = getmany(timeout=1.0)

                # getmany can return at once in a loop; give the event loop a turn
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await deliver(callback, message)
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                         offset, message.key, message.value)
                    unset_flag(flag_consumer_fetching)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


class Conductor(faust_conductor.Conductor):
    """faust's conductor, with a lighter handler for a partition whose channels all carry raw
    bytes (every topic of this service: streams/topics.py). Per message, faust's handler decodes
    key and value through the schema and its codec registry (for `raw` and `bytes`, the bytes as
    they are) and builds the event through `app.create_event`, and asks the producer buffer its
    size through `app.conf` — three settings lookups and a codec round per message. This one
    builds the same event from the message's own key, value and headers, and reads the buffer's
    queue length directly; flow control, the producer buffer's ebb, the reference count, the
    queues' pressure callbacks and a full queue's wait are faust-streaming 0.15.3's
    `ConductorCompiler.build`, unchanged. A partition with any other channel keeps faust's."""

    def _build_handler(self, tp: TP, channels: Any) -> Any:
        if channels and all(_raw_bytes(chan) for chan in channels):
            return _raw_handler(self, tp, channels)
        return super()._build_handler(tp, channels)


def _raw_bytes(channel: Any) -> bool:
    """The channel decodes to the message's own bytes: key and value typed `bytes` (or
    untyped), both with the `raw` serializer."""
    schema = getattr(channel, "schema", None)
    return (schema is not None
            and schema.key_type in (None, bytes) and schema.value_type in (None, bytes)
            and schema.key_serializer == "raw" and schema.value_serializer == "raw")


def _raw_handler(conductor: faust_conductor.Conductor, tp: TP, channels: Any) -> Callable[[Message], Coroutine[Any, Any, None]]:
    app = conductor.app
    consumer_on_buffer_full = app.consumer.on_buffer_full
    consumer_on_buffer_drop = app.consumer.on_buffer_drop
    acquire_flow_control = app.flow_control.acquire
    buffer = app.producer.buffer
    wait_until_producer_ebb = buffer.wait_until_ebb
    threaded = bool(app.conf.producer_threaded)  # its size is another queue's: ask it
    pending = buffer.pending._queue  # type: ignore[attr-defined]  # the deque `size` measures
    max_messages = buffer.max_messages
    on_topic_buffer_full = app.sensors.on_topic_buffer_full
    event_type: Any = app.conf.Event
    len_ = len

    def on_pressure_high() -> None:
        on_topic_buffer_full(tp)
        consumer_on_buffer_full(tp)

    def on_pressure_drop() -> None:
        consumer_on_buffer_drop(tp)

    async def on_message(message: Message) -> None:
        await acquire_flow_control()
        if threaded or len_(pending) > max_messages:
            await wait_until_producer_ebb()
        channels_n = len_(channels)
        if not channels_n:
            return
        message.incref(channels_n)
        event = event_type(app, message.key, message.value, message.headers, message)
        full: list[Any] = []
        for chan in channels:
            queue = chan.queue
            if queue.full():
                full.append(chan)
                continue
            queue.put_nowait_enhanced(event, on_pressure_high=on_pressure_high,
                                      on_pressure_drop=on_pressure_drop)
        if full:
            for _ in full:
                on_topic_buffer_full(tp)
            await asyncio.wait([asyncio.ensure_future(chan.put(event)) for chan in full],
                               return_when=asyncio.ALL_COMPLETED)

    return on_message


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with the project's consumer (`mmkafka://`) and, for
    exactly_once, the project's transaction manager."""

    Consumer = Consumer
    Conductor = Conductor
    TransactionManager = TransactionManager


class Topic(faust.Topic):
    """faust's Topic; publishing takes the running producer directly (see the module doc)."""

    async def _get_producer(self) -> ProducerT:
        app = self.app
        if app.in_transaction:
            # exactly_once: what `maybe_start_producer` returns then, without its three
            # event-loop turns (it starts nothing: the consumer starts its transaction manager)
            return app.consumer.transactions
        producer = app.producer
        if producer.started:
            return producer
        return await super()._get_producer()  # starts it
