"""One event per feature or metric (tables/alert_grouping.py), through `evaluate_key` on simulated
weeks: a drift in every segment is one overall event listing the segments; a drift in one
segment alone is that segment's event; brier and mae stay separate events; and the incident
fields carry a problem from its opening run to its resolution."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from functools import cache
from typing import Any

import orjson

from model_monitoring.commands.simulate import Scenario, StreamConfig, generate, reference_records
from model_monitoring.schemas.validation import Validators
from model_monitoring.tables.alert_grouping import group_drift
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.baseline_build import build_baseline
from model_monitoring.tables.error_sums import PerformanceSums
from model_monitoring.tables.evaluation_state import merge_segments
from model_monitoring.tables.histogram import count_batch
from model_monitoring.tables.incidents import IncidentBook
from model_monitoring.tables.partial import PartialState
from model_monitoring.tables.run_evaluation import KeyReport, evaluate_key
from model_monitoring.tables.thresholds import Thresholds

WEEK_MS = 7 * 86_400_000
END = 1_795_046_400_000
KEY = "acme:risk-scoring"
VALIDATORS = Validators()


@cache
def baseline() -> Baseline:
    return build_baseline(reference_records("risk-scoring", n=5000, seed=11), model_id="risk-scoring",
                          model_version="3", tenant_id=None, task="classification")


def records(scenario: Scenario, seed: int) -> list[tuple[dict[str, Any], float | None]]:
    """One week of acme:risk-scoring: (record, outcome or None)."""
    messages = list(generate(StreamConfig(tenants=("acme",), models=("risk-scoring",), events_per_key=2400,
                                          days=7, end_ms=END, seed=seed, scenario=scenario)))
    outcomes = {m.key: orjson.loads(m.value)["outcome"] for m in messages if m.kind == "outcomes"}
    return [(orjson.loads(m.value), outcomes.get(m.key)) for m in messages if m.kind == "features"]


def week(seed: int, *, shift_in: tuple[str, ...] = (), accuracy_drop: bool = False
         ) -> dict[tuple[str, str | None], PartialState]:
    """The merged states of one week: pipeline_value ×3 in the segments `shift_in`."""
    drop = Scenario(accuracy_drop=(KEY,) if accuracy_drop else ())
    plain = records(drop, seed)
    shifted = records(Scenario(numeric_shift=(KEY,), accuracy_drop=drop.accuracy_drop), seed) if shift_in else plain
    by_segment: dict[str, list[tuple[dict[str, Any], float | None]]] = defaultdict(list)
    for ours, theirs in zip(plain, shifted, strict=True):
        segment = ours[0]["segment"]
        by_segment[segment].append(theirs if segment in shift_in else ours)
    parts = []
    for segment, rows in by_segment.items():
        paired = [(r["prediction"], y) for r, y in rows if y is not None]
        performance = PerformanceSums().update_many([p for p, _ in paired], [y for _, y in paired])
        state = PartialState().add(count_batch(baseline(), [r["features"] for r, _ in rows]), performance)
        state = replace(state, arrived_performance=performance)  # the outcomes arrived in the window too
        parts.append({("3", segment): state})
    return merge_segments(parts)


def evaluate(n: int, merged: dict[tuple[str, str | None], PartialState], book: IncidentBook | None = None,
             job_run_id: str | None = None) -> KeyReport:
    end = END + n * WEEK_MS
    report = evaluate_key(KEY, merged, baseline_for=lambda t, m, v: baseline(), thresholds=Thresholds(),
                          job_run_id=job_run_id or f"run-{n}", window_start_ms=end - WEEK_MS,
                          window_end_ms=end, detected_at=f"2026-11-{20 + n}T06:00:00.000Z", incidents=book)
    for kind, doc in report.events:
        VALIDATORS.validate(kind, doc)
    return report


def test_a_drift_in_every_segment_is_one_event_that_lists_them() -> None:
    report = evaluate(0, week(1, shift_in=("emea", "amer", "apac")))
    drift = report.of_kind("drift")
    assert [(d["feature"], d["segment"]) for d in drift] == [("pipeline_value", None)]
    event = drift[0]
    in_drift = sorted(s["segment"] for s in report.of_kind("snapshot")
                      if s["segment"] and s["features"]["pipeline_value"]["status"] == "drift")
    assert [s["segment"] for s in event["segments"]] == in_drift == ["amer", "apac", "emea"]
    for entry in event["segments"]:
        check = next(s for s in report.of_kind("snapshot") if s["segment"] == entry["segment"])["features"]["pipeline_value"]
        assert entry == {"segment": entry["segment"], "value": check["value"], "psiLower": check["psiLower"],
                         "severity": check["severity"], "sampleSize": check["sampleSize"]}
    assert (event["incidentStatus"], event["openedAt"]) == ("opened", "2026-11-20T06:00:00.000Z")
    assert report.alerts() == [("drift", event)] and report.of_kind("degraded") == []
    assert report.counts["driftDetected"] == 4  # the checks in drift: the count is of checks, not events


def test_a_drift_in_one_segment_alone_is_that_segment_s_event() -> None:
    report = evaluate(0, week(2, shift_in=("apac",)))
    overall = next(s for s in report.of_kind("snapshot") if s["segment"] is None)
    assert overall["features"]["pipeline_value"]["status"] != "drift"
    drift = report.of_kind("drift")
    assert [(d["feature"], d["segment"]) for d in drift] == [("pipeline_value", "apac")]
    assert "segments" not in drift[0] and drift[0]["incidentStatus"] == "opened"


def test_brier_and_mae_are_separate_events_each_with_its_segments() -> None:
    report = evaluate(0, week(3, accuracy_drop=True))
    degraded = report.of_kind("degraded")
    assert [(d["metric"], d["segment"]) for d in degraded] == [("brier", None), ("mae", None)]
    for event in degraded:
        assert [s["segment"] for s in event["segments"]] == ["amer", "apac", "emea"]
        assert {s["segment"]: s["value"] for s in event["segments"]} == {
            s["segment"]: s["performance"][event["metric"]]["value"] for s in report.of_kind("snapshot") if s["segment"]}
    assert {d["incidentId"] for d in degraded} == {d["incidentId"] for d in degraded if d["incidentStatus"] == "opened"}
    assert len({d["incidentId"] for d in degraded}) == 2


def test_the_incident_from_opened_to_ongoing_to_resolved() -> None:
    problem = week(4, shift_in=("emea", "amer", "apac"), accuracy_drop=True)
    first = evaluate(0, problem)
    second = evaluate(1, week(5, shift_in=("emea", "amer", "apac"), accuracy_drop=True), first.incidents)
    third = evaluate(2, week(6), second.incidents)
    opened = {(d.get("feature") or d["metric"]): d for d in first.of_kind("drift") + first.of_kind("degraded")}
    assert set(opened) == {"pipeline_value", "brier", "mae"}
    assert {d["incidentStatus"] for d in opened.values()} == {"opened"}
    ongoing = second.of_kind("drift") + second.of_kind("degraded")
    assert {(d.get("feature") or d["metric"]): (d["incidentStatus"], d["incidentId"], d["openedAt"]) for d in ongoing} == {
        name: ("ongoing", d["incidentId"], d["openedAt"]) for name, d in opened.items()}
    assert second.alerts() == []
    assert third.of_kind("drift") == third.of_kind("degraded") == []
    resolved, recovered = third.of_kind("resolved"), third.of_kind("recovered")
    assert [(d["feature"], d["incidentId"]) for d in resolved] == [("pipeline_value", opened["pipeline_value"]["incidentId"])]
    assert sorted((d["metric"], d["incidentId"]) for d in recovered) == sorted(
        (m, opened[m]["incidentId"]) for m in ("brier", "mae"))
    for event in resolved + recovered:
        assert event["resolution"] == "cleared" and event["value"] < event["clearThreshold"]
        assert (event["openedAt"], event["resolvedAt"]) == ("2026-11-20T06:00:00.000Z", "2026-11-22T06:00:00.000Z")
    assert third.incidents.open == {}


def test_the_same_run_evaluated_again_publishes_the_same_events() -> None:
    merged = week(4, shift_in=("emea", "amer", "apac"), accuracy_drop=True)
    first = evaluate(0, merged)
    again = evaluate(0, merged, first.incidents)  # redelivered after the book was written
    assert again.events == first.events and again.incidents == first.incidents
    later = evaluate(1, week(6), first.incidents)
    stale = evaluate(0, merged, later.incidents, job_run_id="backfill")  # an older week, a new id
    assert stale.stale and stale.incidents == later.incidents
    assert [k for k, _ in stale.events] == ["snapshot"] * 4


def test_grouping_keeps_the_order_and_needs_no_overall_for_segment_events() -> None:
    def event(segment: str | None, feature: str) -> dict[str, Any]:
        return {"segment": segment, "feature": feature, "value": 0.3, "psiLower": 0.2,
                "severity": "warning", "sampleSize": 500}

    events = [event(None, "a"), event("x", "a"), event("y", "b"), event("z", "a"), event("x", "c")]
    grouped = group_drift(events)
    assert [(e["segment"], e["feature"]) for e in grouped] == [(None, "a"), ("y", "b"), ("x", "c")]
    assert [s["segment"] for s in grouped[0]["segments"]] == ["x", "z"]
    assert group_drift([]) == []
