"""Label health of one model version: label coverage, weekly cohorts compared at equal age,
label lag, expired early outcomes, and the `label_coverage` check.

Coverage at equal age: cohort k holds the predictions of the week ending 7k days before the
window's end, so every one of them is at least 7k days old. "Labelled within A days" is known
exactly (the lag histogram has whole-day edges) for every cohort whose predictions are all at
least A days old. The check compares the youngest such cohort, k = ⌈A/7⌉, with the median of
the same share over the next LABEL_HISTORY_WEEKS older cohorts: a label pipeline that breaks
shows as a cohort labelled far below its own history at the same age, whatever the model's
natural lag. It is `degraded` when that share is under `share × median`, the one-sided binomial
test of "true share >= share × median" rejects at `confidence`, and the cohort has at least
`min_samples` predictions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.tables.label_lag import DAY_MS, LagHistogram
from model_monitoring.tables.partial import Cohort

COHORT_WEEKS = 12
LABEL_HISTORY_WEEKS = 8
MIN_HISTORY = 4  # cohorts of history needed for a median
WEEK_MS = 7 * DAY_MS


@dataclass(frozen=True)
class CoveragePolicy:
    share: float = 0.5  # alert below this share of the trailing median
    age_days: int = 14  # the age the cohorts are compared at
    confidence: float = 0.95
    min_samples: int = 100


def labels_report(*, predictions: int, labelled: int, arrived_lags: LagHistogram,
                  cohorts: Mapping[int, Cohort], expired_outcomes: int, window_end_ms: int,
                  policy: CoveragePolicy) -> tuple[dict[str, object], dict[str, object] | None]:
    """The snapshot's `labels` object, and the `label_coverage` check (None without history)."""
    rows: list[dict[str, object]] = []
    for k in range(COHORT_WEEKS):
        cohort = cohorts.get(k, Cohort())
        age = 7 * k
        rows.append({
            "week": k,
            "start": _time(window_end_ms - (k + 1) * WEEK_MS),
            "end": _time(window_end_ms - k * WEEK_MS),
            "predictions": cohort.predictions,
            "labelled": cohort.lags.n,
            "coverage": cohort.lags.n / cohort.predictions if cohort.predictions else None,
            "ageDays": age,
            "coverageAtAge": (cohort.lags.within_days(age) / cohort.predictions
                              if cohort.predictions and age > 0 else None),
        })
    report: dict[str, object] = {
        "coverage": labelled / predictions if predictions else None,
        "predictions": predictions,
        "labelled": labelled,
        "cohorts": rows,
        "lagP50Hours": arrived_lags.quantile_hours(0.5),
        "lagP90Hours": arrived_lags.quantile_hours(0.9),
        "lagResolutionHours": "±0.5 below 48 h, ±12 above",
        "lagSampleSize": arrived_lags.n,
        # outcomes that matched no prediction: theirs was past the join TTL when they came
        "expiredEarlyOutcomes": expired_outcomes,
        "unmatchedOutcomes": expired_outcomes,
    }
    return report, coverage_check(cohorts, policy)


def coverage_check(cohorts: Mapping[int, Cohort], policy: CoveragePolicy) -> dict[str, object] | None:
    """The `label_coverage` performance check (module docstring), or None without history."""
    age = policy.age_days
    k = math.ceil(age / 7)
    history = [cohorts[j].lags.within_days(age) / cohorts[j].predictions
               for j in range(k + 1, k + 1 + LABEL_HISTORY_WEEKS)
               if j in cohorts and cohorts[j].predictions > 0]
    if len(history) < MIN_HISTORY:
        return None
    median = float(np.median(history))
    threshold = policy.share * median
    cohort = cohorts.get(k, Cohort())
    n = cohort.predictions
    x = cohort.lags.within_days(age)
    value = x / n if n else None
    check: dict[str, object] = {
        "value": value, "baseline": median, "threshold": threshold, "status": "insufficient_data",
        "sampleSize": n, "z": None, "pValue": None, "qValue": None, "windowBasis": "prediction",
        "ageDays": age, "cohortWeek": k, "direction": "below",
        "clearThreshold": median * (1.0 - (1.0 - policy.share) / 2.0),
    }
    if value is None or n < policy.min_samples:
        return check
    p_value = float(binom.cdf(x, n, threshold)) if threshold > 0 else 1.0
    degraded = value < threshold and p_value <= 1.0 - policy.confidence
    check.update(status="degraded" if degraded else "ok", pValue=min(1.0, max(0.0, p_value)))
    return check


def _time(ms: int) -> str | None:
    return format_timestamp(ms) if ms >= 0 else None
