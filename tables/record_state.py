"""The merged state of one view built from raw records in one pass — what `check` evaluates.

It uses the stream's own state classes and rules (tables/ingest.py: scores clipped to [0, 1],
reliability bins of clipped probabilities, lags as outcome − prediction time; tables/run_evaluation.py:
arrival by the later of the two times, weekly cohorts counted back from the window's end), so
`evaluate_snapshot` reads the same figures from it as from the partials the stream merges. The
window's edges are times here, not whole day buckets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.calibration import ReliabilityBins
from model_monitoring.tables.error_sums import ErrorSums, PerformanceSums
from model_monitoring.tables.histogram import count_batch
from model_monitoring.tables.label_lag import LagHistogram
from model_monitoring.tables.partial import Cohort, PartialState
from model_monitoring.tables.run_evaluation import COHORT_WEEKS, WEEK_MS


@dataclass(frozen=True)
class Scored:
    """One prediction of the view, and its outcome when it has one."""

    timestamp_ms: int
    prediction: float
    features: Mapping[str, object]
    outcome: float | None = None
    outcome_ms: int | None = None


JOIN_TTL_MS = 90 * 86_400_000  # the setting's default


def view_state(baseline: Baseline | None, records: Sequence[Scored], *, window_start_ms: int,
               window_end_ms: int, cohorts: Sequence[Scored] = (), join_ttl_ms: int = JOIN_TTL_MS) -> PartialState:
    """`records`: the predictions made in the window (and their outcomes so far); `cohorts`:
    every prediction known (the window's own included), default the same records: those of the
    COHORT_WEEKS weeks before the window's end make label health's cohorts, and those whose
    outcome arrived in the window make the outcome-arrival view."""
    # an outcome later than the join TTL matches nothing (as in the stream): unmatched, counted
    # on its arrival day
    late = [r for r in (cohorts or records) if r.outcome_ms is not None and r.outcome_ms - r.timestamp_ms > join_ttl_ms]
    unmatched = sum(1 for r in late if r.outcome_ms is not None and window_start_ms <= r.outcome_ms < window_end_ms)
    late_ids = {id(r) for r in late}
    records = [_unlabelled(r) if id(r) in late_ids else r for r in records]
    cohorts = [_unlabelled(r) if id(r) in late_ids else r for r in cohorts]
    p = np.asarray([r.prediction for r in records], dtype=np.float64)
    histogram = count_batch(baseline, [r.features for r in records])
    score_counts: tuple[int, ...] = ()
    if baseline is not None and baseline.prediction is not None:
        counts, _ = baseline.prediction.bins.bin_values(list(p))
        score_counts = tuple(int(c) for c in counts)
    made = _pairs(records)
    arrived = _pairs([r for r in (cohorts or records) if r.outcome_ms is not None
                      and window_start_ms <= max(r.timestamp_ms, r.outcome_ms) < window_end_ms])
    weeks: dict[int, Cohort] = {}
    for r in cohorts or records:
        week = (window_end_ms - 1 - r.timestamp_ms) // WEEK_MS
        if 0 <= week < COHORT_WEEKS:
            lags = LagHistogram()
            if r.outcome is not None and r.outcome_ms is not None:
                lags = lags.update_many([r.outcome_ms - r.timestamp_ms])
            weeks[int(week)] = weeks.get(int(week), Cohort()).merge(Cohort(1, lags))
    return PartialState(
        histogram=histogram, performance=made[0], scores=ErrorSums().update_many(np.clip(p, 0.0, 1.0)),
        score_counts=score_counts, calibration=made[1], lags=made[2], arrived_performance=arrived[0],
        arrived_calibration=arrived[1], arrived_lags=arrived[2], cohorts=weeks, expired_outcomes=unmatched)


def _unlabelled(r: Scored) -> Scored:
    return Scored(r.timestamp_ms, r.prediction, r.features)


def _pairs(records: Sequence[Scored]) -> tuple[PerformanceSums, ReliabilityBins, LagHistogram]:
    labelled = [r for r in records if r.outcome is not None]
    p = np.asarray([r.prediction for r in labelled], dtype=np.float64)
    y = np.asarray([r.outcome for r in labelled], dtype=np.float64)
    lags = [r.outcome_ms - r.timestamp_ms for r in labelled if r.outcome_ms is not None]
    return (PerformanceSums.empty().update_many(p, y), ReliabilityBins().update_many(np.clip(p, 0.0, 1.0), y),
            LagHistogram().update_many(lags) if lags else LagHistogram())
