"""Forwards folded in place (`tables/forwarding.InPlace`, streams/repartition.py "Folded in
place"), as a property: one source partition's records bound for one destination partition,
folded there either through the repartition log or in place by the worker holding both, under
the one slot whose watermark skips an offset at or below the highest applied — the worst case,
every record on one partial key. Rebalances move the destination between this worker and
another, rewind the source and the repartition log to their committed offsets, and start a new
generation; batches, commits and the other worker's reading of the log interleave at random. In
the end every source record is applied exactly once. A worker that folded in place whenever it
held the destination (no `InPlace`) loses records: the watermark passes forwards still in the
log, and the test of the model says so too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import example, given, settings
from hypothesis import strategies as st

from model_monitoring.tables.forwarding import InPlace

KIND, SOURCE, TARGET = "features", 0, 1


@dataclass
class World:
    """The source partition, the repartition log of the destination, the destination's slot."""

    n: int                                  # source records 0 .. n-1
    in_place: Callable[[World], bool]       # the policy: fold this batch in place?
    state: InPlace = field(default_factory=InPlace)
    generation: int = 0
    holds_target: bool = True               # this worker holds the destination partition
    source_position: int = 0
    source_committed: int = 0
    log: list[int] = field(default_factory=list)   # source offsets, in repartition order
    log_position: int = 0
    log_committed: int = 0
    watermark: int = -1
    applied: list[int] = field(default_factory=list)

    def fold(self, offset: int) -> None:
        if offset > self.watermark:
            self.applied.append(offset)
            self.watermark = offset

    def source_batch(self, size: int) -> None:
        """This worker reads a batch of the source and forwards it: in place, or to the log."""
        batch = list(range(self.source_position, min(self.n, self.source_position + size)))
        if not batch:
            return
        self.state.begin(self.generation)
        if self.holds_target and self.state.wants_end(KIND, TARGET):
            self.state.saw_end(KIND, TARGET, len(self.log))
        if self.holds_target and self.in_place(self):
            for offset in batch:
                self.fold(offset)
        else:
            for offset in batch:
                self.log.append(offset)
            self.state.forwarded(KIND, TARGET, len(self.log) - 1)  # acknowledged
        self.source_position = batch[-1] + 1

    def log_batch(self, size: int) -> None:
        """The destination's holder (this worker or the other) folds a batch of the log."""
        end = min(len(self.log), self.log_position + size)
        for position in range(self.log_position, end):
            self.fold(self.log[position])
        self.log_position = end
        if self.holds_target:
            self.state.begin(self.generation)
            self.state.folded_to(KIND, TARGET, end)

    def commit(self) -> None:
        self.source_committed, self.log_committed = self.source_position, self.log_position

    def rebalance(self, holds_target: bool) -> None:
        """A new generation: both partitions resume from their committed offsets."""
        self.generation += 1
        self.holds_target = holds_target
        self.source_position, self.log_position = self.source_committed, self.log_committed

    def drain(self) -> None:
        while self.source_position < self.n or self.log_position < len(self.log):
            self.source_batch(7)
            self.log_batch(7)


def with_in_place(world: World) -> bool:
    return world.state.decide(KIND, SOURCE, TARGET, world.log_committed)


def whenever_held(world: World) -> bool:
    return True


ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("source"), st.integers(1, 9)),
    st.tuples(st.just("log"), st.integers(1, 9)),
    st.tuples(st.just("commit"), st.just(0)),
    st.tuples(st.just("rebalance"), st.integers(0, 1)),
), max_size=60)


def run(actions: list[tuple[str, int]], policy: Callable[[World], bool], n: int = 60) -> World:
    world = World(n, policy)
    for action, arg in actions:
        if action == "source":
            world.source_batch(arg)
        elif action == "log":
            world.log_batch(arg)
        elif action == "commit":
            world.commit()
        else:
            world.rebalance(bool(arg))
    world.drain()
    return world


@settings(max_examples=1500, deadline=None)
@given(actions=ACTIONS)
# in place, then the destination elsewhere, forwards committed at the source but not folded from
# the log, and the destination back: a generation's decision must not outlive it
@example(actions=[("rebalance", 1), ("source", 3), ("rebalance", 0), ("source", 5), ("commit", 0),
                  ("rebalance", 1), ("source", 3)])
# this worker's own forwards since the end was read, still in the log
@example(actions=[("rebalance", 1), ("log", 1), ("source", 3), ("source", 3), ("commit", 0),
                  ("source", 2), ("log", 1), ("source", 4)])
def test_every_record_is_applied_once_whichever_way_it_went(actions: list[tuple[str, int]]) -> None:
    world = run(actions, with_in_place)
    assert world.applied == list(range(world.n))


def test_folding_in_place_whenever_held_loses_the_forwards_still_in_the_log() -> None:
    """What `InPlace` prevents: forwards in the log, a rebalance hands this worker the
    destination, and its in-place folds pass them."""
    actions = [("rebalance", 0), ("source", 9), ("commit", 0), ("rebalance", 1), ("source", 9)]
    assert run(actions, whenever_held).applied != list(range(60))
    assert run(actions, with_in_place).applied == list(range(60))


def test_in_place_waits_for_the_log_then_stays_for_the_generation() -> None:
    state = InPlace()
    state.begin(3)
    assert not state.decide(KIND, SOURCE, TARGET, None)  # the end not read yet
    state.saw_end(KIND, TARGET, 10)
    assert not state.decide(KIND, SOURCE, TARGET, 4)
    state.folded_to(KIND, TARGET, 9)
    assert not state.decide(KIND, SOURCE, TARGET, None)
    state.forwarded(KIND, TARGET, 12)  # a forward of its own since: up to 13 now
    state.folded_to(KIND, TARGET, 12)
    assert not state.decide(KIND, SOURCE, TARGET, 10)
    assert state.decide(KIND, SOURCE, TARGET, 13)  # committed counts
    state.forwarded(KIND, TARGET, 20)  # decided: stays in place in this generation
    assert state.decide(KIND, SOURCE, TARGET, None)
    assert not state.decide(KIND, SOURCE + 1, TARGET, None)  # another source: its own decision
    state.begin(4)  # a rebalance: afresh
    assert state.wants_end(KIND, TARGET) and not state.decide(KIND, SOURCE, TARGET, 100)


def test_only_own_forwards_ahead_is_the_case_to_wait_for() -> None:
    """`own_forwards_ahead`: the log folded past its end, only this worker's own forwards left
    (waiting brings `decide` to yes); not while the log's earlier contents are still unfolded,
    not once decided, not after a wait for that target ran out in the generation."""
    state = InPlace()
    state.begin(1)
    assert not state.own_forwards_ahead(KIND, TARGET, None)  # the end not read yet
    state.saw_end(KIND, TARGET, 10)
    state.forwarded(KIND, TARGET, 14)
    assert not state.own_forwards_ahead(KIND, TARGET, 4)  # the log's backlog first: not ours
    state.folded_to(KIND, TARGET, 10)
    assert state.own_forwards_ahead(KIND, TARGET, None)
    assert state.own_forwards_ahead(KIND, TARGET + 1, None) is False  # another target: nothing read
    state.give_up(KIND, TARGET)
    assert not state.own_forwards_ahead(KIND, TARGET, None)
    state.folded_to(KIND, TARGET, 15)  # the reader caught up by itself: decided all the same
    assert state.decide(KIND, SOURCE, TARGET, None)
    state.begin(2)
    state.saw_end(KIND, TARGET, 15)
    state.forwarded(KIND, TARGET, 20)
    state.folded_to(KIND, TARGET, 15)
    assert state.own_forwards_ahead(KIND, TARGET, None)  # a new generation may wait again
    state.folded_to(KIND, TARGET, 21)
    assert not state.own_forwards_ahead(KIND, TARGET, None) and state.decide(KIND, SOURCE, TARGET, None)


def steady_load(wait: bool, batches: int = 40) -> int:
    """A source batch, then the reader folds the log up to where it was before that batch (it
    lags one batch, as under steady load); with `wait`, a source batch whose target has only its
    own forwards ahead first lets the reader fold them. It starts with the destination newly
    held and a batch in its log unfolded. The batches folded in place."""
    world = World(7 * (batches + 1), with_in_place, holds_target=False)
    world.source_batch(7)
    world.commit()
    world.rebalance(True)
    folded_in_place = 0
    for _ in range(batches):
        world.state.begin(world.generation)
        if world.state.wants_end(KIND, TARGET):
            world.state.saw_end(KIND, TARGET, len(world.log))
        if wait and world.state.own_forwards_ahead(KIND, TARGET, world.log_committed):
            world.log_batch(len(world.log) - world.log_position)
        before = len(world.log)
        held = world.state.decide(KIND, SOURCE, TARGET, world.log_committed)
        world.source_batch(7)
        folded_in_place += held
        world.log_batch(before - world.log_position)
    world.drain()
    assert world.applied == list(range(world.n))
    return folded_in_place


def test_waiting_for_its_own_forwards_lets_a_worker_under_steady_load_go_in_place() -> None:
    """Without the wait, a reader one batch behind keeps `sent` ahead of `folded` for ever: the
    worker never folds in place (the liveness gap seen with two workers); with it, from the
    second batch on. Exactness holds either way."""
    assert steady_load(wait=False) == 0
    assert steady_load(wait=True) == 39
