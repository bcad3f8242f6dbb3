"""The oracle of a weekly run: the offline fold of the input log, cut to the run's window and
tenants, evaluated with the same pure functions as the service — the events a run must
publish, each once — and the comparison of what was published with them. The oracle carries
each key's incidents from run to run (in the order the runs were made), as the service does."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bench.scenarios.common import Result
from model_monitoring.streams.settings import Settings
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.evaluation_state import merge_segments
from model_monitoring.tables.histogram import FeatureHistogram
from model_monitoring.tables.incidents import IncidentBook
from model_monitoring.tables.job_run import COUNT_FIELDS
from model_monitoring.tables.partial import PartialState
from model_monitoring.tables.record_state import Scored, view_state
from model_monitoring.tables.run_evaluation import COHORT_WEEKS, WEEK_MS, evaluate_key, in_window
from model_monitoring.tables.trigger import window_for
from tests.support.oracle import Fold, ViewKey

# wall-clock times of the evaluation: the service's, which the oracle cannot know
IGNORED_FIELDS = ("detectedAt", "openedAt", "resolvedAt")
KINDS = ("snapshot", "drift", "degraded", "resolved", "recovered")


def expected_run(fold: Fold, baselines: Mapping[tuple[str, str], Baseline], s: Settings,
                 job_run_id: str, window_end_ms: int, tenant_ids: list[str] | None = None,
                 incidents: dict[str, IncidentBook] | None = None) -> dict[str, Any]:
    """{"snapshot": [...], "drift": [...], "degraded": [...], "resolved": [...], "recovered": [...],
    "counts": {...}, "tenants": [...]}: one pass over the input log, evaluated by the same pure
    functions as the stream's. `incidents` (tenant:model -> book) holds the incidents of the
    runs before this one, and is updated with this run's."""
    incidents = {} if incidents is None else incidents
    start, end = window_for(window_end_ms, s.window_ms, s.bucket_ms)
    histograms: dict[ViewKey, FeatureHistogram] = {}
    for (tenant, model, version, segment, day), state in sorted(fold.states.items()):
        if in_window(day, s.bucket_ms, start, end):
            key = (tenant, model, version, segment)
            histograms[key] = histograms[key].merge(state.histogram) if key in histograms else state.histogram
    groups: dict[str, list[dict[tuple[str, str], PartialState]]] = defaultdict(list)
    for (tenant, model, version, segment), scored in sorted(fold.scored.items()):
        if tenant_ids is not None and tenant not in tenant_ids:
            continue
        if not any(_counted(r, start, end) for r in scored):
            continue
        state = view_state(baselines.get((model, version)), [r for r in scored if start <= r.timestamp_ms < end],
                           window_start_ms=start, window_end_ms=end, cohorts=scored, join_ttl_ms=s.join_ttl_ms)
        # the feature counts as the stream keeps them (names only for a version without baseline)
        histogram = histograms.get((tenant, model, version, segment), PartialState().histogram)
        groups[f"{tenant}:{model}"].append({(version, segment): replace(state, histogram=histogram)})
    out: dict[str, Any] = {**{kind: [] for kind in KINDS},
                           "counts": Counter(dict.fromkeys(COUNT_FIELDS, 0)),
                           "tenants": sorted({k.split(":", 1)[0] for k in groups})}
    if tenant_ids is not None:
        out["tenants"] = sorted(tenant_ids)
    for model_key, parts in sorted(groups.items()):
        report = evaluate_key(
            model_key, merge_segments(parts),
            baseline_for=lambda tenant, model, version: baselines.get((model, version)),
            thresholds=s.thresholds(), job_run_id=job_run_id, window_start_ms=start,
            window_end_ms=end, detected_at="", incidents=incidents.get(model_key),
            policy=s.incident_policy())
        incidents[model_key] = report.incidents
        for kind in KINDS:
            out[kind] += report.of_kind(kind)
        out["counts"].update(report.counts)
    return out


def _counted(r: Scored, start: int, end: int) -> bool:
    """A prediction a run reads: made in the window, in one of label health's weekly cohorts
    before the window's end, or with its outcome arriving in the window (as window_parts)."""
    week = (end - 1 - r.timestamp_ms) // WEEK_MS
    arrived = r.outcome_ms is not None and start <= max(r.timestamp_ms, r.outcome_ms) < end
    return start <= r.timestamp_ms < end or 0 <= week < COHORT_WEEKS or arrived


def event_key(kind: str, doc: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes an event the same event: its eventId, or for a snapshot what it is about."""
    if kind == "snapshot":
        return (doc["jobRunId"], doc["tenantId"], doc["modelId"], doc["modelVersion"], doc["segment"])
    return (doc["eventId"],)


def same_values(a: Any, b: Any, path: str = "") -> str | None:
    """First difference between two JSON values (floats to 1e-9 relative), or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in IGNORED_FIELDS:
                continue
            if k not in a or k not in b:
                return f"{path}.{k}: present on one side only"
            diff = same_values(a[k], b[k], f"{path}.{k}")
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            diff = same_values(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(
                a, b, rel_tol=1e-9, abs_tol=1e-12):
            return None
        return f"{path}: {a!r} != {b!r}"
    return None if a == b else f"{path}: {a!r} != {b!r}"


def check_run(result: Result, expected: Mapping[str, Any], published: Mapping[str, list[dict[str, Any]]],
              label: str = "") -> None:
    """Every expected event published exactly once with the expected values, nothing else, and
    one completion that counts what was checked. Adds to the row's event figures."""
    tag = f"{label}: " if label else ""
    completions, failures = published["completed"], published["failed"]
    for kind in KINDS:
        want = {event_key(kind, d): d for d in expected[kind]}
        got: dict[tuple[Any, ...], dict[str, Any]] = {}
        copies = Counter(event_key(kind, d) for d in published[kind])
        for d in published[kind]:
            got.setdefault(event_key(kind, d), d)
        result.events_expected += len(want)
        result.events_published += len(got)
        repeated = sum(n - 1 for n in copies.values())
        result.duplicates += repeated
        result.check(not repeated, f"{tag}{kind}: {repeated} events published more than once")
        result.check(set(got) == set(want), f"{tag}{kind}: {len(set(want) - set(got))} missing, "
                                            f"{len(set(got) - set(want))} unexpected")
        for key in set(got) & set(want):
            diff = same_values(got[key], want[key])
            if diff:
                result.problems.append(f"{tag}{kind} {key}: {diff}")
                break
    result.events_expected += 1
    result.events_published += min(1, len(completions))
    result.duplicates += max(0, len(completions) - 1)
    result.check(len(completions) == 1 and not failures,
                 f"{tag}{len(completions)} completions, {len(failures)} failures {failures[:1]}")
    if completions:
        done = completions[0]
        counts = {k: done.get(k) for k in expected["counts"]}
        result.check(counts == dict(expected["counts"]), f"{tag}completion counts {counts} != "
                                                          f"{dict(expected['counts'])}")
        result.check(done.get("tenants") == expected["tenants"],
                     f"{tag}completion tenants {done.get('tenants')} != {expected['tenants']}")
