"""The run route's pure parts: `Prefer` (RFC 7240) and how long a request is held, the run an
Idempotency-Key names, and the answer a run's status gives — which must be the very
`workflow.job.completed` the tracker publishes."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.schemas.validation import Validators, load_schema
from model_monitoring.tables import job_run as tr
from model_monitoring.tables.job_run import Complete, JobRun
from model_monitoring.tables.job_tracker import run_summary, track, with_outbox
from model_monitoring.tables.keys import RunKey
from model_monitoring.tables.run_messages import KeyEvaluated, PartitionReport, RunMessage, StartRun
from model_monitoring.tables.run_request import (
    MAX_WAIT_SECONDS,
    RUN_FAILED_STATUS,
    Preferences,
    check_idempotency_key,
    finished_answer,
    idempotent_job_run_id,
    parse_prefer,
    same_tenants,
)

JOB_RUN_ID = re.compile(load_schema("trigger")["properties"]["jobRunId"]["pattern"])


# ------------------------------------------------------------------ Prefer
@pytest.mark.parametrize(("headers", "expected"), [
    ([], Preferences()),
    (["respond-async"], Preferences(respond_async=True)),
    (["wait=10"], Preferences(wait_seconds=10)),
    (["respond-async, wait=5"], Preferences(respond_async=True, wait_seconds=5)),
    (["respond-async", "wait=5"], Preferences(respond_async=True, wait_seconds=5)),  # two headers
    (["Respond-Async ; foo=bar,WAIT = 7"], Preferences(respond_async=True, wait_seconds=7)),
    (['wait="12"'], Preferences(wait_seconds=12)),
    (["wait=3, wait=9"], Preferences(wait_seconds=3)),  # the first occurrence wins
    (["return=minimal, handling=lenient"], Preferences()),  # not ours: ignored
    (["wait=abc", "wait=-1", "wait=1.5"], Preferences()),  # not delta-seconds: ignored
    (["wait=abc, wait=4"], Preferences()),  # the first `wait` was malformed; not replaced
    (["wait"], Preferences()),
    ([""], Preferences()),
    ([",,, ;"], Preferences()),
])
def test_prefer_parsing(headers: list[str], expected: Preferences) -> None:
    assert parse_prefer(headers) == expected


@given(st.lists(st.text(max_size=80), max_size=4))
def test_prefer_parsing_never_fails_on_any_header(headers: list[str]) -> None:
    hold = parse_prefer(headers).hold_seconds(60.0)
    assert 0.0 <= hold <= MAX_WAIT_SECONDS


def test_how_long_a_request_is_held() -> None:
    assert Preferences().hold_seconds(60.0) == 60.0  # the caller that sends nothing special
    assert Preferences(respond_async=True).hold_seconds(60.0) == 0.0
    assert Preferences(wait_seconds=5).hold_seconds(60.0) == 5.0  # less
    assert Preferences(wait_seconds=200).hold_seconds(60.0) == 200.0  # more
    assert Preferences(wait_seconds=10**8).hold_seconds(60.0) == MAX_WAIT_SECONDS
    assert Preferences(respond_async=True, wait_seconds=8).hold_seconds(60.0) == 8.0  # 202 after 8 s
    assert Preferences().hold_seconds(10**6) == MAX_WAIT_SECONDS


def test_preference_applied() -> None:
    assert Preferences().applied(answered_async=True) is None
    assert Preferences(respond_async=True).applied(answered_async=True) == "respond-async"
    assert Preferences(respond_async=True).applied(answered_async=False) is None
    assert Preferences(respond_async=True, wait_seconds=3).applied(True) == "respond-async, wait=3"
    assert Preferences(wait_seconds=MAX_WAIT_SECONDS + 1).applied(False) is None  # not honoured


# ------------------------------------------------------------------ Idempotency-Key
def test_idempotency_key_names_one_run_per_caller() -> None:
    run = idempotent_job_run_id("weekly-2026-11-29", "batch-jobs", None)
    assert run == idempotent_job_run_id("weekly-2026-11-29", "batch-jobs", None)  # any worker, any time
    assert JOB_RUN_ID.fullmatch(run) and len(run) <= 128
    others = {idempotent_job_run_id("weekly-2026-11-30", "batch-jobs", None),
              idempotent_job_run_id("weekly-2026-11-29", "someone-else", None),
              idempotent_job_run_id("weekly-2026-11-29", None, None),
              idempotent_job_run_id("weekly-2026-11-29", "batch-jobs", ["acme"])}
    assert run not in others and len(others) == 4
    assert idempotent_job_run_id("k", "s", ["b", "a"]) == idempotent_job_run_id("k", "s", frozenset({"a", "b"}))


@given(st.text(min_size=1, max_size=255), st.one_of(st.none(), st.text(max_size=40)),
       st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=20), max_size=5)))
def test_every_derived_job_run_id_is_a_valid_one(key: str, subject: str | None, scope: list[str] | None) -> None:
    assert JOB_RUN_ID.fullmatch(idempotent_job_run_id(key, subject, scope))


@pytest.mark.parametrize(("raw", "key"), [
    ("abc", "abc"), (" 5f0c-11 ", "5f0c-11"), ('"quoted key"', "quoted key"), ("a" * 255, "a" * 255),
    ('"', '"'),
])
def test_idempotency_key_accepted(raw: str, key: str) -> None:
    assert check_idempotency_key(raw) == key


@pytest.mark.parametrize("raw", ["", "   ", '""', "a" * 256, "caf\u00e9", "tab\there"])
def test_idempotency_key_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="Idempotency-Key"):
        check_idempotency_key(raw)


def test_same_tenants() -> None:
    assert same_tenants({"tenantIds": None}, None)
    assert same_tenants({"tenantIds": ["b", "a"]}, ["a", "b"])
    assert not same_tenants({"tenantIds": None}, ["a"])
    assert not same_tenants({"tenantIds": ["a"]}, None)
    assert not same_tenants({"tenantIds": ["a"]}, ["a", "b"])


# ------------------------------------------------------------------ the answer
class Tracker:
    """The job tracker's table (a dict) driven through `tables/job_tracker.track`, as the agent
    drives it, with the run-status entry it saves."""

    def __init__(self) -> None:
        self.table: dict[bytes, bytes] = {}
        self.offset = 0
        self.key = RunKey(0, "r1").encode()

    def apply(self, message: RunMessage, now_ms: int) -> list[tr.Action]:
        self.offset += 1
        step = track(message, 0, self.offset, self.table.get, now_ms)
        assert step.run is not None
        self.table.update(step.writes)
        self.table[self.key] = step.run.to_bytes()
        return step.actions

    @property
    def run(self) -> JobRun:
        return JobRun.from_bytes(self.table[self.key])

    def status(self, run: JobRun | None = None) -> dict[str, Any]:
        return run_summary(run or self.run, 0, self.table.get)


def completed_run() -> tuple[Tracker, Complete]:
    """A run of every tenant driven to completion, with the completion it publishes."""
    tracker = Tracker()
    tracker.apply(StartRun(JobRun(job_run_id="r1", window_start_ms=0, window_end_ms=7 * 86_400_000,
                                  tenant_ids=None, source="http", started_ms=1_000, deadline_ms=900_000,
                                  partitions=2)), 1_000)
    tracker.apply(PartitionReport("r1", 0, ("acme:churn",)), 2_000)
    tracker.apply(PartitionReport("r1", 1, ("globex:churn",)), 2_100)
    tracker.apply(KeyEvaluated("r1", "acme:churn", {"driftChecked": 6, "performanceChecked": 2,
                                                    "driftDetected": 1}), 2_500)
    (done,) = tracker.apply(KeyEvaluated("r1", "globex:churn", {"driftChecked": 4, "performanceChecked": 2}),
                            3_250)
    assert isinstance(done, Complete)
    return tracker, done


def test_the_answer_is_the_published_completion() -> None:
    tracker, done = completed_run()
    published = dict(done.payload)  # as agents/run.py `complete` turns it into the message
    published["completedAt"] = format_timestamp(int(published.pop("completedAtMs")))
    answer = finished_answer(tracker.status())
    assert answer is not None and answer.status == 200
    assert answer.body == published
    assert answer.body["tenants"] == ["acme", "globex"] and answer.body["driftChecked"] == 10
    Validators().validate("completed", answer.body)


def test_no_answer_while_the_completion_is_still_in_the_outbox() -> None:
    tracker, done = completed_run()
    pending, _, _ = with_outbox(tracker.run, [done], 3_250)
    assert tracker.status(pending)["status"] == "running" and finished_answer(tracker.status(pending)) is None
    cleared = replace(pending, outbox=None)
    assert tracker.status(cleared)["status"] == "completed"
    assert finished_answer(tracker.status(cleared)) is not None


def test_a_running_run_has_no_answer_and_a_failed_one_its_reason() -> None:
    run, _ = tr.start(None, JobRun(job_run_id="r2", window_start_ms=0, window_end_ms=1, tenant_ids=("acme",),
                                   source="http", started_ms=1_000, deadline_ms=61_000, partitions=3))
    assert finished_answer(run.summary()) is None
    failed, _ = tr.check_deadline(run, 61_000)
    answer = finished_answer(failed.summary())
    assert answer is not None and answer.status == RUN_FAILED_STATUS == 500
    assert answer.body["error"] == "run_failed" and "deadline" in answer.body["message"]
    assert answer.body["jobRunId"] == "r2" and answer.body["failedAt"] == format_timestamp(61_000)


def test_a_run_completed_before_tenants_were_kept_answers_with_those_asked_for() -> None:
    tracker, _ = completed_run()
    summary = tracker.status()
    summary.pop("tenants")
    summary["tenantIds"] = ["acme"]
    answer = finished_answer(summary)
    assert answer is not None and answer.body["tenants"] == ["acme"]
