"""The job tracker's state machine: fan-out once, complete exactly when every partition has
reported and every key is evaluated, repeat nothing for duplicates, fail at the deadline —
with a run value of constant size (reports and evaluations are separate entries)."""

from __future__ import annotations

from dataclasses import replace

from model_monitoring.tables import job_run as tr
from model_monitoring.tables.job_run import Complete, Evaluate, Fail, FanOut, JobRun
from model_monitoring.tables.job_tracker import outbox_action, track, with_outbox
from model_monitoring.tables.keys import RunKey
from model_monitoring.tables.run_messages import KeyEvaluated, KeysEvaluated, PartitionReport, RunMessage, StartRun

COUNTS = {"driftChecked": 6, "performanceChecked": 2, "driftDetected": 1, "performanceDegraded": 0}


def new_run(partitions: int = 3, tenants: tuple[str, ...] | None = None) -> JobRun:
    return JobRun(job_run_id="r1", window_start_ms=0, window_end_ms=7 * 86_400_000,
                  tenant_ids=tenants, source="topic", started_ms=1_000, deadline_ms=61_000,
                  partitions=partitions)


class Shell:
    """The job tracker's table (a dict) driven through `tables/job_tracker.track`, as the agent
    drives it: entries written, then the run saved."""

    def __init__(self, run: JobRun, partition: int = 0) -> None:
        self.partition = partition
        self.offset = 0
        self.table: dict[bytes, bytes] = {RunKey(partition, run.job_run_id).encode(): run.to_bytes()}

    @property
    def run(self) -> JobRun:
        return JobRun.from_bytes(self.table[RunKey(self.partition, "r1").encode()])

    def apply(self, message: RunMessage, now: int) -> list[tr.Action]:
        self.offset += 1
        step = track(message, self.partition, self.offset, self.table.get, now)
        assert step.run is not None
        self.table.update(step.writes)
        self.table[step.key.encode()] = step.run.to_bytes()
        return step.actions

    def report(self, partition: int, keys: list[str], now: int) -> list[tr.Action]:
        return self.apply(PartitionReport("r1", partition, tuple(keys)), now)

    def evaluated(self, key: str, now: int) -> list[tr.Action]:
        return self.apply(KeyEvaluated("r1", key, COUNTS), now)


def test_start_through_the_tracker_fans_out_and_a_duplicate_is_noted() -> None:
    table: dict[bytes, bytes] = {}
    step = track(StartRun(new_run()), 0, 0, table.get, 1_000)
    assert step.actions == [FanOut()] and step.note is None
    assert step.run == replace(new_run(), applied_offset=0)
    table[step.key.encode()] = step.run.to_bytes()
    again = track(StartRun(new_run()), 0, 1, table.get, 1_500)
    assert again.actions == [FanOut()] and again.note is not None and "duplicate" in again.note


def test_a_message_for_an_unknown_run_is_ignored() -> None:
    step = track(KeyEvaluated("nope", "a:m", COUNTS), 0, 5, {}.get, 1_000)
    assert step.run is None and step.writes == {} and step.actions == []


def test_start_fans_out_once_and_a_duplicate_trigger_starts_nothing_after_reports() -> None:
    run, actions = tr.start(None, new_run())
    assert actions == [FanOut()]
    shell = Shell(run)
    shell.report(0, ["acme:churn"], 2_000)
    again, actions = tr.start(shell.run, new_run())
    assert actions == [] and again == shell.run


def test_a_retried_start_of_a_finished_run_changes_nothing() -> None:
    """The HTTP caller's retry with the same Idempotency-Key: the same jobRunId, a later plan
    (another trigger time, so another window and deadline). The first run stands."""
    shell = Shell(tr.start(None, new_run(partitions=1))[0])
    shell.report(0, [], 2_000)
    assert shell.run.status == "completed"
    retry = replace(new_run(partitions=1), window_end_ms=14 * 86_400_000, started_ms=9_000, deadline_ms=99_000)
    for run in (shell.run, replace(shell.run, status="failed")):
        assert tr.start(run, retry) == (run, [])
    step = track(StartRun(retry), 0, shell.offset + 1, shell.table.get, 9_000)
    assert step.actions == [] and step.run == replace(shell.run, applied_offset=shell.offset + 1)


def test_completes_only_when_all_partitions_and_keys_are_done() -> None:
    shell = Shell(tr.start(None, new_run())[0])
    assert shell.report(0, ["acme:churn", "globex:churn"], 2_000) == []
    assert shell.report(1, ["acme:churn"], 2_000) == []
    assert shell.report(2, [], 2_000) == [Evaluate({"acme:churn": (0, 1), "globex:churn": (0,)})]
    assert shell.evaluated("acme:churn", 3_000) == [] and shell.run.status == "running"
    assert shell.evaluated("acme:churn", 3_100) == []  # redelivered: counted once
    (done,) = shell.evaluated("globex:churn", 4_000)
    assert isinstance(done, Complete) and shell.run.status == "completed"
    assert done.payload["driftChecked"] == 12 and done.payload["durationMs"] == 3_000
    assert done.payload["tenants"] == ["acme", "globex"]
    before = shell.run
    assert shell.evaluated("globex:churn", 5_000) == []
    assert shell.run == replace(before, applied_offset=shell.offset)  # nothing but the watermark


def test_a_repeated_report_repeats_the_evaluate_requests_of_pending_keys_only() -> None:
    shell = Shell(tr.start(None, new_run(partitions=1))[0])
    assert shell.report(0, ["acme:churn", "acme:risk"], 2_000) == [
        Evaluate({"acme:churn": (0,), "acme:risk": (0,)})]
    shell.evaluated("acme:churn", 2_100)
    assert shell.report(0, ["acme:churn", "acme:risk"], 2_500) == [Evaluate({"acme:risk": (0,)})]


def test_no_data_completes_with_zero_counts() -> None:
    shell = Shell(tr.start(None, new_run(partitions=2, tenants=("nobody",)))[0])
    shell.report(0, [], 1_500)
    (done,) = shell.report(1, [], 1_700)
    assert isinstance(done, Complete) and done.payload["driftChecked"] == 0
    assert done.payload["tenants"] == ["nobody"]


def test_deadline_fails_a_stuck_run_once() -> None:
    run, _ = tr.start(None, new_run())
    run, a = tr.check_deadline(run, 60_999)
    assert a == []
    run, a = tr.check_deadline(run, 61_000)
    (fail,) = a
    assert isinstance(fail, Fail) and "0/3 partitions reported" in str(fail.payload["error"])
    assert tr.check_deadline(run, 99_000)[1] == []


def test_the_run_value_does_not_grow_with_keys() -> None:
    shell = Shell(tr.start(None, new_run(partitions=1))[0])
    keys = [f"t{i}:m" for i in range(2000)]
    shell.report(0, keys, 2_000)
    sizes = []
    for i, k in enumerate(keys):
        shell.evaluated(k, 3_000 + i)
        sizes.append(len(shell.run.to_bytes()))
    assert shell.run.status == "completed"
    assert max(sizes) < 1024


def test_codec_round_trip() -> None:
    shell = Shell(tr.start(None, new_run(tenants=("a", "b")))[0])
    shell.report(1, ["a:m"], 2_000)
    assert JobRun.from_bytes(shell.run.to_bytes()) == shell.run


def test_a_redelivered_message_already_applied_changes_nothing() -> None:
    shell = Shell(tr.start(None, new_run(partitions=1))[0])
    shell.report(0, ["a:m", "b:m"], 2_000)
    shell.evaluated("a:m", 3_000)
    before = dict(shell.table)
    step = track(KeyEvaluated("r1", "a:m", COUNTS), 0, shell.offset, shell.table.get, 3_500)
    assert not step.applied and step.writes == {} and step.actions == []
    assert shell.table == before


def test_a_message_whose_run_update_a_crash_lost_counts_once() -> None:
    """The evaluated entry reached the changelog, the run's new value did not: the same message,
    redelivered, still counts; a repeated report of the key (another message) does not."""
    shell = Shell(tr.start(None, new_run(partitions=1))[0])
    shell.report(0, ["a:m", "b:m"], 2_000)
    run_before = shell.table[RunKey(0, "r1").encode()]
    step = track(KeyEvaluated("r1", "a:m", COUNTS), 0, 10, shell.table.get, 3_000)
    shell.table.update(step.writes)  # ...and the worker died before saving the run
    assert shell.table[RunKey(0, "r1").encode()] == run_before
    again = track(KeyEvaluated("r1", "a:m", COUNTS), 0, 10, shell.table.get, 4_000)
    assert again.run is not None and again.run.evaluated == 1
    shell.table.update(again.writes)
    shell.table[again.key.encode()] = again.run.to_bytes()
    repeat = track(KeyEvaluated("r1", "a:m", COUNTS), 0, 11, shell.table.get, 5_000)
    assert repeat.run is not None and repeat.run.evaluated == 1


def test_the_completion_goes_through_the_outbox() -> None:
    shell = Shell(tr.start(None, new_run(partitions=1))[0])
    shell.report(0, ["a:m"], 2_000)
    step = track(KeyEvaluated("r1", "a:m", COUNTS), 0, 9, shell.table.get, 3_000)
    assert step.run is not None
    run, rest, terminal = with_outbox(step.run, step.actions, 3_000)
    assert rest == [] and isinstance(terminal, Complete)
    assert run.outbox is not None and run.outbox["kind"] == "completed" and run.outbox["sinceMs"] == 3_000
    stored = JobRun.from_bytes(run.to_bytes())
    assert outbox_action(stored) == terminal


def test_a_batch_of_evaluated_keys_counts_each_once_and_completes_once() -> None:
    """One evaluator's report of many keys: each counts once, a batch the crash kept from the
    run still counts when redelivered, a key repeated in a later batch does not, and the run
    completes once, with the sum of the batches."""
    shell = Shell(tr.start(None, new_run(partitions=1))[0])
    shell.report(0, ["a:m", "b:m", "c:m"], 2_000)
    first = KeysEvaluated("r1", (("a:m", COUNTS), ("b:m", COUNTS), ("a:m", COUNTS)))
    run_before = shell.table[RunKey(0, "r1").encode()]
    step = track(first, 0, 10, shell.table.get, 3_000)
    shell.table.update(step.writes)  # ...and the worker died before saving the run
    assert shell.table[RunKey(0, "r1").encode()] == run_before
    again = track(first, 0, 10, shell.table.get, 3_500)
    assert again.run is not None and again.run.evaluated == 2 and again.actions == []
    shell.table.update(again.writes)
    shell.table[again.key.encode()] = again.run.to_bytes()
    last = track(KeysEvaluated("r1", (("b:m", COUNTS), ("c:m", COUNTS))), 0, 11, shell.table.get, 4_000)
    assert last.run is not None and last.run.evaluated == 3
    (done,) = last.actions
    assert isinstance(done, Complete) and done.payload["driftChecked"] == 3 * COUNTS["driftChecked"]
