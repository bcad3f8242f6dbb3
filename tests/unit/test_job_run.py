"""The job tracker's state machine: fan-out once, complete exactly when every partition has
reported and every key is evaluated, repeat nothing for duplicates, fail at the deadline."""

from __future__ import annotations

from tables import job_run as tr
from tables.job_run import Complete, Evaluate, Fail, FanOut, JobRun


def new_run(partitions: int = 3, tenants: tuple[str, ...] | None = None) -> JobRun:
    return JobRun(job_run_id="r1", window_start_ms=0, window_end_ms=7 * 86_400_000,
                  tenant_ids=tenants, source="topic", started_ms=1_000, deadline_ms=61_000,
                  partitions=partitions)


def test_start_fans_out_once_and_a_duplicate_trigger_starts_nothing_after_reports() -> None:
    run, actions = tr.start(None, new_run())
    assert actions == [FanOut()]
    run, _ = tr.report(run, 0, ["acme:churn"], 2_000)
    again, actions = tr.start(run, new_run())
    assert actions == [] and again == run


def test_completes_only_when_all_partitions_and_keys_are_done() -> None:
    run, _ = tr.start(None, new_run())
    run, a = tr.report(run, 0, ["acme:churn", "globex:churn"], 2_000)
    assert a == []
    run, a = tr.report(run, 1, ["acme:churn"], 2_000)
    assert a == []
    run, a = tr.report(run, 2, [], 2_000)
    assert a == [Evaluate({"acme:churn": (0, 1), "globex:churn": (0,)})]
    counts = {"driftChecked": 6, "performanceChecked": 2, "driftDetected": 1, "performanceDegraded": 0}
    run, a = tr.evaluated(run, "acme:churn", counts, 3_000)
    assert a == [] and run.status == "running"
    run, a = tr.evaluated(run, "acme:churn", counts, 3_100)  # redelivered: counted once
    assert a == []
    run, a = tr.evaluated(run, "globex:churn", counts, 4_000)
    assert run.status == "completed"
    (done,) = a
    assert isinstance(done, Complete)
    assert done.payload["driftChecked"] == 12 and done.payload["durationMs"] == 3_000
    assert done.payload["tenants"] == ["acme", "globex"]
    run2, a = tr.evaluated(run, "globex:churn", counts, 5_000)
    assert a == [] and run2 == run


def test_a_repeated_report_after_all_reported_repeats_the_evaluate_requests() -> None:
    run, _ = tr.start(None, new_run(partitions=1))
    run, a1 = tr.report(run, 0, ["acme:churn"], 2_000)
    run, a2 = tr.report(run, 0, ["acme:churn"], 2_500)
    assert a1 == a2 == [Evaluate({"acme:churn": (0,)})]


def test_no_data_completes_with_zero_counts() -> None:
    run, _ = tr.start(None, new_run(partitions=2, tenants=("nobody",)))
    run, _ = tr.report(run, 0, [], 1_500)
    run, a = tr.report(run, 1, [], 1_700)
    (done,) = a
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


def test_codec_round_trip() -> None:
    run, _ = tr.start(None, new_run(tenants=("a", "b")))
    run, _ = tr.report(run, 1, ["a:m"], 2_000)
    assert JobRun.from_bytes(run.to_bytes()) == run
