"""The demo's incident lifecycle says which incidents are on problems its generator injected,
and counts the others as false alarms."""

from __future__ import annotations

from typing import Any

from model_monitoring.commands.demo import DEMO_SCENARIO
from model_monitoring.commands.demo_report import RUN_KINDS, injected, lifecycle


def event(incident: str, key: str, status: str, *, feature: str | None = None, metric: str = "psi",
          segment: str | None = None, kind: str | None = None) -> dict[str, Any]:
    tenant, model = key.split(":")
    e: dict[str, Any] = {"incidentId": incident, "tenantId": tenant, "modelId": model, "segment": segment,
                         "metric": metric, "incidentStatus": status}
    if feature is not None:
        e["feature"] = feature
    if kind is not None:
        e["kind"] = kind
    return e


def run(**by_kind: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {k: by_kind.get(k, []) for k in RUN_KINDS}


def test_injected_is_the_generators_truth() -> None:
    shifted = next(iter(DEMO_SCENARIO.numeric_shift))
    dropped = next(iter(DEMO_SCENARIO.accuracy_drop))
    assert injected(event("a", shifted, "opened", feature="pipeline_value", kind="feature"), DEMO_SCENARIO)
    assert not injected(event("a", shifted, "opened", feature="amount", kind="feature"), DEMO_SCENARIO)
    assert not injected(event("a", shifted, "opened", feature="prediction", kind="prediction"), DEMO_SCENARIO)
    assert injected(event("a", dropped, "opened", metric="ece", segment="emea"), DEMO_SCENARIO)
    assert not injected(event("a", "globex:risk-scoring", "opened", metric="ece", segment="emea"), DEMO_SCENARIO)
    # a resolved drift event names its feature but no kind
    assert injected(event("a", shifted, "resolved", feature="pipeline_value"), DEMO_SCENARIO)


def test_the_lifecycle_marks_each_incident_and_counts_the_false_alarms() -> None:
    shifted = next(iter(DEMO_SCENARIO.numeric_shift))
    weeks = [("w1", run(drift=[event("aaaaaaaa-1", shifted, "opened", feature="pipeline_value", kind="feature")])),
             ("w2", run(degraded=[event("bbbbbbbb-2", "globex:risk-scoring", "opened", metric="ece",
                                        segment="emea")])),
             ("w3", run(resolved=[event("aaaaaaaa-1", shifted, "resolved", feature="pipeline_value")]))]
    lines = lifecycle(weeks, DEMO_SCENARIO)
    assert lines[0].startswith("aaaaaaaa") and " injected " in lines[0]
    assert lines[0].endswith("opened (week 1) -> resolved (week 3)")
    assert lines[1].startswith("bbbbbbbb") and "NOT INJECTED" in lines[1]
    assert lines[2].startswith("(1 incidents on injected problems, 1 on problems not injected: false alarms.")
    assert len(lines) == 3
