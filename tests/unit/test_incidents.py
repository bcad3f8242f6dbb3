"""The incident fold (tables/incidents.py): open -> ongoing -> escalated -> resolved, hysteresis,
resolve-after-runs, covered segments, absent and stale runs, and replay: a run applied again
after a crash (with or without its book written) gives the same transitions, and a log of runs
folded with crashes gives the book and the events of the log folded once."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_monitoring.tables.error_sums import ErrorSums
from model_monitoring.tables.evaluation import metric_entry
from model_monitoring.tables.incident_events import checks_of, metric_lower_bound
from model_monitoring.tables.incidents import (
    Check,
    IncidentBook,
    IncidentKey,
    IncidentPolicy,
    RunRef,
    Transition,
    fold,
)
from model_monitoring.tables.performance import evaluate_metric
from model_monitoring.tables.thresholds import Thresholds

POLICY = IncidentPolicy(psi_clear=0.8, resolve_after_runs=2)
CLEAR = 0.08  # 0.8 × the warning threshold 0.1
AMOUNT = IncidentKey("3", None, "drift", "amount")
AMOUNT_EMEA = IncidentKey("3", "emea", "drift", "amount")
BRIER = IncidentKey("3", None, "performance", "brier")
WEEK_MS = 7 * 86_400_000


def run(n: int) -> RunRef:
    return RunRef("acme:churn", f"run-{n}", 1_795_046_400_000 + n * WEEK_MS, f"2026-11-{10 + n:02d}T06:00:00.000Z")


def drift(value: float, severity: str | None = "warning", lower: float | None = None) -> Check:
    return Check(breach=severity is not None, severity=severity, value=value, clear_threshold=CLEAR,
                 lower=lower, sample_size=1000)


def brier(value: float, degraded: bool) -> Check:
    return Check(breach=degraded, severity=None, value=value, clear_threshold=0.12 * 1.05, sample_size=800)


def apply(book: IncidentBook, n: int, checks: dict[IncidentKey, Check]) -> tuple[IncidentBook, list[Transition]]:
    return fold(book, run(n), checks, POLICY)


def statuses(transitions: list[Transition]) -> list[tuple[IncidentKey, str]]:
    return [(t.key, t.status) for t in transitions]


def test_open_ongoing_escalated_resolved() -> None:
    book, t1 = apply(IncidentBook(), 1, {AMOUNT: drift(0.15)})
    assert statuses(t1) == [(AMOUNT, "opened")] and t1[0].is_alert
    opened = t1[0].incident
    assert (opened.opened_at, opened.opened_run, opened.severity) == (run(1).detected_at, "run-1", "warning")
    book, t2 = apply(book, 2, {AMOUNT: drift(0.16)})
    assert statuses(t2) == [(AMOUNT, "ongoing")] and not t2[0].is_alert
    book, t3 = apply(book, 3, {AMOUNT: drift(0.4, "critical")})
    assert statuses(t3) == [(AMOUNT, "escalated")] and t3[0].is_alert
    book, t4 = apply(book, 4, {AMOUNT: drift(0.3, "warning")})  # back to warning: an update
    assert statuses(t4) == [(AMOUNT, "ongoing")] and t4[0].incident.severity == "critical"
    book, t5 = apply(book, 5, {AMOUNT: drift(0.02, None)})
    assert statuses(t5) == [(AMOUNT, "resolved")] and t5[0].resolution == "cleared"
    assert {t.incident.incident_id for t in t1 + t2 + t3 + t4 + t5} == {opened.incident_id}
    assert t5[0].incident.last_value == 0.02 and t5[0].incident.opened_at == opened.opened_at
    assert book.open == {}
    # a new breach is a new incident, with a new id
    book, t6 = apply(book, 6, {AMOUNT: drift(0.2)})
    assert statuses(t6) == [(AMOUNT, "opened")] and t6[0].incident.incident_id != opened.incident_id


def test_not_in_breach_above_the_clear_level_stays_open_then_resolves_after_two_quiet_runs() -> None:
    book, _ = apply(IncidentBook(), 1, {AMOUNT: drift(0.2)})
    book, t2 = apply(book, 2, {AMOUNT: drift(0.09, None, lower=0.085)})  # under 0.1, over 0.08
    assert t2 == [] and book.open[AMOUNT].quiet_runs == 1  # open, silent
    book, t3 = apply(book, 3, {AMOUNT: drift(0.15)})  # in breach again: the same incident goes on
    assert statuses(t3) == [(AMOUNT, "ongoing")] and book.open[AMOUNT].quiet_runs == 0
    book, t4 = apply(book, 4, {AMOUNT: drift(0.095, None, lower=0.09)})
    assert t4 == []
    book, t5 = apply(book, 5, {AMOUNT: drift(0.095, None, lower=0.09)})
    assert statuses(t5) == [(AMOUNT, "resolved")] and t5[0].resolution == "quiet_runs"
    assert t5[0].incident.quiet_runs == 2 and book.open == {}


def test_a_lower_bound_under_the_clear_level_clears_even_with_the_plug_in_over_it() -> None:
    book, _ = apply(IncidentBook(), 1, {AMOUNT: drift(0.3)})
    _, t2 = apply(book, 2, {AMOUNT: drift(0.09, None, lower=0.01)})
    assert statuses(t2) == [(AMOUNT, "resolved")] and t2[0].resolution == "cleared"


def test_insufficient_data_counts_as_quiet_and_resolve_after_runs_is_a_setting() -> None:
    no_value = Check(breach=False, severity=None, value=None, clear_threshold=CLEAR)
    book, _ = apply(IncidentBook(), 1, {AMOUNT: drift(0.3)})
    book, t2 = apply(book, 2, {AMOUNT: no_value})
    assert t2 == [] and book.open[AMOUNT].last_value == 0.3
    _, t3 = apply(book, 3, {AMOUNT: no_value})
    assert statuses(t3) == [(AMOUNT, "resolved")] and t3[0].incident.last_value == 0.3
    patient = IncidentPolicy(resolve_after_runs=3)
    book, _ = fold(IncidentBook(), run(1), {AMOUNT: drift(0.3)}, patient)
    book, _ = fold(book, run(2), {AMOUNT: no_value}, patient)
    book, t3 = fold(book, run(3), {AMOUNT: no_value}, patient)
    assert t3 == [] and AMOUNT in book.open


def test_performance_clears_under_baseline_times_one_plus_half_the_tolerance() -> None:
    book, t1 = apply(IncidentBook(), 1, {BRIER: brier(0.16, True)})
    assert statuses(t1) == [(BRIER, "opened")] and t1[0].incident.severity is None
    book, t2 = apply(book, 2, {BRIER: brier(0.127, False)})  # under the threshold 0.132, over 0.126
    assert t2 == []
    book, t3 = apply(book, 3, {BRIER: brier(0.125, False)})
    assert statuses(t3) == [(BRIER, "resolved")] and t3[0].resolution == "cleared"


def test_a_metric_clears_by_its_lower_confidence_bound_too() -> None:
    book, _ = apply(IncidentBook(), 1, {BRIER: brier(0.16, True)})
    noisy = replace(brier(0.128, False), lower=0.121)  # over the clear level 0.126, its bound under it
    _, t2 = apply(book, 2, {BRIER: noisy})
    assert statuses(t2) == [(BRIER, "resolved")] and t2[0].resolution == "cleared"


def test_the_metric_bound_is_value_minus_z_standard_errors() -> None:
    sums = ErrorSums().update_many(np.random.default_rng(3).uniform(0.0, 0.3, 400))
    thresholds = Thresholds(tolerance=0.1, confidence=0.95)
    verdict = evaluate_metric("mae", sums, 0.14, thresholds)
    assert verdict is not None and verdict.z is not None
    entry = metric_entry(verdict)
    bound = metric_lower_bound(entry, 0.95)
    std_error = sums.std_error()
    assert std_error is not None and bound == pytest.approx(entry["value"] - 1.6448536 * std_error, rel=1e-6)
    assert metric_lower_bound({**entry, "z": None}, 0.95) == entry["value"]  # errors without spread
    assert metric_lower_bound({**entry, "status": "insufficient_data"}, 0.95) is None
    check = checks_of({"modelVersion": "3", "segment": None, "modelId": "m", "features": {},
                       "performance": {"mae": entry}}, thresholds, POLICY)[IncidentKey("3", None, "performance", "mae")]
    assert (check.lower, check.clear_threshold) == (bound, pytest.approx(0.14 * 1.05))


def test_an_absent_check_moves_nothing() -> None:
    book, _ = apply(IncidentBook(), 1, {AMOUNT: drift(0.3), BRIER: brier(0.2, True)})
    book, t2 = apply(book, 2, {BRIER: brier(0.2, True)})  # no amount this week
    assert statuses(t2) == [(BRIER, "ongoing")] and book.open[AMOUNT].quiet_runs == 0
    book, t3 = apply(book, 3, {})
    assert t3 == [] and set(book.open) == {AMOUNT, BRIER}


def test_a_segment_under_an_overall_breach_opens_nothing_and_is_updated_silently() -> None:
    book, t1 = apply(IncidentBook(), 1, {AMOUNT: drift(0.3), AMOUNT_EMEA: drift(0.5)})
    assert statuses(t1) == [(AMOUNT, "opened")]
    # the overall clears, the segment goes on: it opens an incident of its own
    book, t2 = apply(book, 2, {AMOUNT: drift(0.01, None), AMOUNT_EMEA: drift(0.5)})
    assert statuses(t2) == [(AMOUNT, "resolved"), (AMOUNT_EMEA, "opened")]
    # the overall breaches again: a new overall incident; the segment's is updated, silently
    book, t3 = apply(book, 3, {AMOUNT: drift(0.3), AMOUNT_EMEA: drift(0.6, "critical")})
    assert statuses(t3) == [(AMOUNT, "opened")]
    assert book.open[AMOUNT_EMEA].severity == "critical" and book.open[AMOUNT_EMEA].last_run == "run-3"
    # a covered segment incident that clears still says so
    book, t4 = apply(book, 4, {AMOUNT: drift(0.3), AMOUNT_EMEA: drift(0.01, None)})
    assert statuses(t4) == [(AMOUNT, "ongoing"), (AMOUNT_EMEA, "resolved")]


def test_the_same_run_again_yields_the_same_transitions_with_or_without_its_book() -> None:
    book, _ = apply(IncidentBook(), 1, {AMOUNT: drift(0.3), BRIER: brier(0.2, True)})
    checks = {AMOUNT: drift(0.02, None), BRIER: brier(0.2, True), AMOUNT_EMEA: drift(0.4)}
    after, first = apply(book, 2, checks)
    again, replayed = apply(after, 2, checks)  # the book was written, then the worker died
    assert replayed == first and again == after
    lost, replayed = apply(book, 2, checks)  # the book's write was lost
    assert replayed == first and lost == after
    assert IncidentBook.from_bytes(after.to_bytes()) == after


def test_a_run_older_than_the_last_applied_changes_nothing() -> None:
    book, _ = apply(IncidentBook(), 1, {AMOUNT: drift(0.3)})
    book, _ = apply(book, 2, {AMOUNT: drift(0.3)})
    for older in (run(1), replace(run(5), job_run_id="backfill", window_end_ms=run(1).window_end_ms)):
        assert book.is_stale(older)
        assert fold(book, older, {AMOUNT: drift(0.01, None)}, POLICY) == (book, [])
    # the same week under another jobRunId is a later run, not a stale one
    same_week = replace(run(2), job_run_id="rerun")
    assert not book.is_stale(same_week)
    _, t = fold(book, same_week, {AMOUNT: drift(0.3)}, POLICY)
    assert statuses(t) == [(AMOUNT, "ongoing")]


# -- replay: a log of runs folded with crashes equals the log folded once -------------------------

KEYS = [AMOUNT, AMOUNT_EMEA, BRIER, IncidentKey("3", "apac", "performance", "brier")]


@st.composite
def weekly_checks(draw: st.DrawFn) -> dict[IncidentKey, Check]:
    out = {}
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True)):
        if key.kind == "drift":
            severity = draw(st.sampled_from([None, "warning", "critical"]))
            value = draw(st.floats(0.0, 0.6))
            out[key] = drift(value, severity, draw(st.none() | st.floats(0.0, value)))
        else:
            out[key] = brier(draw(st.floats(0.05, 0.3)), draw(st.booleans()))
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(weekly_checks(), min_size=1, max_size=10), st.lists(st.booleans(), min_size=10, max_size=10),
       st.lists(st.booleans(), min_size=10, max_size=10))
def test_folding_with_crashes_equals_folding_once(log: list[dict[IncidentKey, Check]], crash: list[bool],
                                                  book_written: list[bool]) -> None:
    once, events = IncidentBook(), []
    for n, checks in enumerate(log):
        once, transitions = apply(once, n, checks)
        events += [(n, t) for t in transitions]
    crashed, published = IncidentBook(), {}
    for n, checks in enumerate(log):
        before = crashed
        crashed, transitions = apply(crashed, n, checks)
        if crash[n]:  # killed after publishing some of it; redelivered on restart
            first = {(t.key, t.status): t for t in transitions[: len(transitions) // 2]}
            published.update({(n, *k): t for k, t in first.items()})
            crashed, transitions = apply(crashed if book_written[n] else before, n, checks)
        published.update({(n, t.key, t.status): t for t in transitions})
    assert crashed == once
    assert published == {(n, t.key, t.status): t for n, t in events}
