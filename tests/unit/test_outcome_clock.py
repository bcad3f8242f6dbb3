"""The outcome clock: the outcome-arrival view, error sums that outlive the retention up to the
join TTL, calibration, label health and prediction drift — each against a direct numpy
computation on the raw values (tables/ingest.py → tables/run_evaluation.py → tables/evaluation.py)."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.schemas.validation import Validators
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.baseline_build import build_baseline
from model_monitoring.tables.calibration import ReliabilityBins, ece_test
from model_monitoring.tables.evaluation_state import merge_segments
from model_monitoring.tables.expiry import expired_partials, partials_to_trim
from model_monitoring.tables.keys import ArrivalKey, PartialKey
from model_monitoring.tables.label_lag import HOUR_MS, LagHistogram
from model_monitoring.tables.partial import PartialState
from model_monitoring.tables.psi import psi
from model_monitoring.tables.run_evaluation import evaluate_key, window_parts
from model_monitoring.tables.thresholds import Thresholds
from tests.support.fold_store import FoldStore

DAY = 86_400_000
WEEK = 7 * DAY
T0 = 1_795_000_000_000 // DAY * DAY  # a day edge
RETENTION, TTL = 35 * DAY, 90 * DAY
VALIDATORS = Validators()


def reference_baseline(n: int = 4_000, seed: int = 1) -> Baseline:
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 5, n)
    y = (rng.random(n) < p).astype(int)
    records = [{"predictionId": f"r{i}", "tenantId": "*", "modelId": "m", "modelVersion": "1",
                "timestamp": "2026-10-01T00:00:00Z", "prediction": float(p[i]), "outcome": int(y[i]),
                "features": {"x": float(rng.normal())}} for i in range(n)]
    return build_baseline(records, model_id="m", model_version="1", tenant_id=None, task="classification")


BASELINE = reference_baseline()


class Store(FoldStore):
    """The fold's tables, the partition's event-time marks, and the fold's counts."""

    def __init__(self) -> None:
        super().__init__(BASELINE, retention_ms=RETENTION, join_ttl_ms=TTL)
        self.offsets = {"f": 0, "o": 0}
        self.counts: dict[str, int] = defaultdict(int)

    def batch(self, kind: str, records: list[Any]) -> list[tuple[int, int, Any]]:
        """Give records the next offsets of their topic."""
        start = self.offsets[kind]
        self.offsets[kind] += len(records)
        return [(start + i, 0, r) for i, r in enumerate(records)]

    def apply(self, kind: str, batch: list[tuple[int, int, Any]]) -> None:
        fold, mark = self.fold(), max(self.meta.values(), default=-1)
        if kind == "f":
            res = fold.fold_predictions(batch, self.get_partial, self.get_join, self.meta.get(kind, -1), mark)
        else:
            res = fold.fold_outcomes(batch, self.get_partial, self.get_join, self.meta.get(kind, -1), TTL, mark)
        for k, v in res.joins.items():
            self.joins[k] = v.to_bytes()
        for k, s in res.partials.items():
            self.partials[k] = s.to_bytes()
        for name, n in res.counts.items():
            self.counts[name] += n
        self.meta[kind] = max(self.meta.get(kind, -1), res.max_event_ms)

    def expire(self) -> None:
        marks = {0: max(self.meta.values())}
        for key, value in list(partials_to_trim(self.partials.items(), marks, DAY, RETENTION, TTL)):
            self.partials[key] = value
        for key in list(expired_partials(list(self.partials), marks, DAY, RETENTION, TTL)):
            del self.partials[key]


def pred(pid: str, ts: int, p: float = 0.7, x: float = 0.1) -> InferenceRecord:
    return InferenceRecord(pid, "t", "m", "1", ts, p, None, {"x": x})


def outc(pid: str, y: float, ts: int) -> OutcomeRecord:
    return OutcomeRecord(pid, "t", "m", y, ts)


def prediction_day(store: Store, day: int) -> PartialState | None:
    return store.get_partial(PartialKey(0, "t", "m", "1", "", day).encode())


def arrival_day(store: Store, day: int) -> PartialState | None:
    return store.get_partial(ArrivalKey(0, "t", "m", "1", "", day).encode())


# ------------------------------------------------------------------ retention


def test_an_outcome_past_the_retention_counts_once_and_a_redelivery_past_the_error_retention_never() -> None:
    """Crossing the retention line (35 days) with an outcome at day 60 of its prediction, then
    the error retention line (the join TTL, 90 days) with its redelivery."""
    s = Store()
    day0 = T0 // DAY
    s.apply("f", s.batch("f", [pred("p1", T0 + HOUR_MS)]))
    s.apply("f", s.batch("f", [pred("clock-50", T0 + 50 * DAY)]))  # event time moves past the retention
    s.expire()
    trimmed = prediction_day(s, day0)
    assert trimmed is not None, "the prediction day's error sums outlive the retention"
    assert trimmed.histogram.n == 0 and trimmed.scores.n == 1 and trimmed.watermarks["f"] == 0

    outcome = s.batch("o", [outc("p1", 0.0, T0 + 60 * DAY)])
    s.apply("o", outcome)
    s.apply("o", outcome)  # at-least-once: the same offset again
    for state in (prediction_day(s, day0), arrival_day(s, day0 + 60)):
        assert state is not None and state.performance.n == 1
        assert state.performance.squared.total == 0.7**2
    assert s.counts["matched"] == 1

    s.apply("f", s.batch("f", [pred("clock-100", T0 + 100 * DAY)]))  # past the join TTL of day 0
    s.expire()
    assert prediction_day(s, day0) is None and arrival_day(s, day0 + 60) is not None
    s.apply("o", outcome)  # redelivered once more: its prediction day is gone, with its watermark
    assert prediction_day(s, day0) is None, "a redelivery never recreates an expired partial"
    assert s.counts["past_retention"] == 1 and s.counts["matched"] == 1
    arrived = arrival_day(s, day0 + 60)
    assert arrived is not None and arrived.performance.n == 1


def test_an_outcome_later_than_the_join_ttl_is_unmatched_and_counted_once() -> None:
    s = Store()
    day0 = T0 // DAY
    s.apply("f", s.batch("f", [pred("p1", T0 + HOUR_MS)]))
    s.apply("f", s.batch("f", [pred("clock-95", T0 + 95 * DAY)]))
    late = s.batch("o", [outc("p1", 1.0, T0 + 96 * DAY)])
    s.apply("o", late)
    s.apply("o", late)
    arrived = arrival_day(s, day0 + 96)
    assert arrived is not None and arrived.expired_outcomes == 1 and arrived.performance.n == 0
    assert s.counts["matched"] == 0


def test_an_outcome_later_than_the_join_ttl_is_unmatched_whichever_topic_the_worker_reads_first() -> None:
    """The two inputs are two topics, so a worker may fold an outcome before its prediction (the
    features topic behind). A pair further apart than the TTL matches in neither order: the
    prediction that finds its late outcome waiting counts it unmatched on the outcome's day,
    once, as the outcome that finds its prediction does. (The sales test on Tansu counted 699 and
    702 outcome-view pairs for 698 when the prediction side matched without the TTL.)"""
    day0 = T0 // DAY
    ended = {}
    for order in (("f", "o"), ("o", "f")):
        s = Store()
        batches = {"f": s.batch("f", [pred("p1", T0 + HOUR_MS), pred("p2", T0 + 10 * DAY, p=0.4)]),
                   "o": s.batch("o", [outc("p1", 1.0, T0 + 96 * DAY), outc("p2", 0.0, T0 + 96 * DAY)])}
        for kind in order:
            s.apply(kind, batches[kind])
            s.apply(kind, batches[kind])  # at-least-once: the same offsets again
        arrived = arrival_day(s, day0 + 96)
        assert arrived is not None and arrived.expired_outcomes == 1, order
        assert arrived.performance.n == 1 and arrived.performance.squared.total == 0.4**2, order
        first = prediction_day(s, day0)
        assert first is not None and first.performance.n == 0, order
        assert s.counts["matched"] == 1, order
        # the same state either way, but for which input's offsets the watermarks hold
        ended[order] = [replace(state, watermarks={}) for state in (arrived, first, prediction_day(s, day0 + 10))
                        if state is not None]
    assert len(ended[("f", "o")]) == 3 and ended[("f", "o")] == ended[("o", "f")]


def test_before_the_fix_the_day_60_outcome_would_land_on_an_expired_day() -> None:
    """What the retention fix is about: with error sums expiring at the retention (the old rule),
    the day-0 partial is gone before its outcome comes."""
    s = Store()
    s.apply("f", s.batch("f", [pred("p1", T0 + HOUR_MS)]))
    s.apply("f", s.batch("f", [pred("clock-50", T0 + 50 * DAY)]))
    old_rule = list(expired_partials(list(s.partials), {0: max(s.meta.values())}, DAY, RETENTION))
    assert PartialKey(0, "t", "m", "1", "", T0 // DAY).encode() in old_rule
    new_rule = list(expired_partials(list(s.partials), {0: max(s.meta.values())}, DAY, RETENTION, TTL))
    assert PartialKey(0, "t", "m", "1", "", T0 // DAY).encode() not in new_rule


# ------------------------------------------------------------------ calibration


@pytest.mark.parametrize("seed", range(5))
def test_reliability_bins_give_ece_and_the_exact_murphy_decomposition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3_000))
    p = np.concatenate([rng.beta(2, 3, n), [0.0, 1.0, 0.1, 0.9999999]])
    y = (rng.random(p.size) < p ** 1.3).astype(float)
    chunks = np.array_split(np.arange(p.size), 7)
    random.Random(seed).shuffle(chunks)
    bins = ReliabilityBins()
    for chunk in chunks:  # merged in any order, by any partitioning
        bins = bins.merge(ReliabilityBins().update_many(p[chunk], y[chunk]))
    assert bins == ReliabilityBins().update_many(p, y)
    d = bins.decomposition()
    assert d is not None
    k = np.clip(np.floor(p * 10), 0, 9).astype(int)
    brier = float(np.mean((p - y) ** 2))
    ece = rel = res = wbv = wbc = 0.0
    for b in np.unique(k):
        pk, yk = p[k == b], y[k == b]
        ece += pk.size / p.size * abs(pk.mean() - yk.mean())
        rel += pk.size * (pk.mean() - yk.mean()) ** 2 / p.size
        res += pk.size * (yk.mean() - y.mean()) ** 2 / p.size
        wbv += np.sum((pk - pk.mean()) ** 2) / p.size
        wbc += 2 * np.sum((pk - pk.mean()) * (yk - yk.mean())) / p.size
    assert bins.ece() == pytest.approx(ece, abs=1e-12)
    for name, value in (("reliability", rel), ("resolution", res), ("withinBinVariance", wbv),
                        ("withinBinCovariance", wbc), ("uncertainty", y.mean() * (1 - y.mean()))):
        assert d[name] == pytest.approx(value, abs=1e-12), name
    total = d["reliability"] - d["resolution"] + d["uncertainty"] + d["withinBinVariance"] - d["withinBinCovariance"]
    assert abs(total - brier) <= 1e-12 and abs(d["brier"] - brier) <= 1e-12


def test_ece_is_judged_against_its_sampling_distribution_at_that_n() -> None:
    """A calibrated model on 150 outcomes shows an ECE several times a large sample's, and it is
    not degraded; the same miscalibration is caught at 5,000."""
    rng = np.random.default_rng(7)
    alarms = 0
    for _ in range(100):
        p = rng.beta(2, 5, 150)
        y = (rng.random(150) < p).astype(float)
        verdict = ece_test(ReliabilityBins().update_many(p, y), BASELINE.ece, BASELINE.ece_null_mean,
                           tolerance=0.1, confidence=0.95, min_outcomes=100)
        assert verdict is not None and verdict.value is not None and verdict.null_mean is not None
        assert verdict.value > 2 * BASELINE.ece * 0 + 0.02  # small samples run high
        alarms += verdict.status == "degraded"
    assert alarms <= 10  # the test is conservative: at most ~5% under calibration
    p = rng.beta(2, 5, 5_000)
    y = (rng.random(5_000) < np.minimum(1.0, p * 1.6)).astype(float)  # under-confident by 60%
    verdict = ece_test(ReliabilityBins().update_many(p, y), BASELINE.ece, BASELINE.ece_null_mean,
                       tolerance=0.1, confidence=0.95, min_outcomes=100)
    assert verdict is not None and verdict.status == "degraded" and verdict.p_value is not None
    assert verdict.p_value < 0.01


def test_the_ece_verdict_does_not_depend_on_the_order_partials_were_merged() -> None:
    """Regression: the null draws were matched to bins in the order the bins entered the sums,
    so the same outcomes merged from partitions in another order gave another clearThreshold
    (seen as 0.07587 against 0.07576 in the reliability harness)."""
    rng = np.random.default_rng(3)
    p = rng.beta(2, 5, 400)
    y = (rng.random(400) < p).astype(float)
    low, high = p < 0.2, p >= 0.2
    first = ReliabilityBins().update_many(p[low], y[low]).merge(ReliabilityBins().update_many(p[high], y[high]))
    second = ReliabilityBins().update_many(p[high], y[high]).merge(ReliabilityBins().update_many(p[low], y[low]))
    assert list(first.sums) != list(second.sums)  # the bins entered in different orders
    a, b = (ece_test(bins, BASELINE.ece, BASELINE.ece_null_mean, tolerance=0.1, confidence=0.95,
                     min_outcomes=100) for bins in (first, second))
    assert a == b


# ------------------------------------------------------------------ lag histogram


def test_lag_quantiles_are_within_the_stated_resolution() -> None:
    rng = np.random.default_rng(3)
    lags = np.concatenate([rng.integers(0, 47 * HOUR_MS, 300), (rng.lognormal(3.4, 0.6, 3_000) * DAY).astype(np.int64)])
    hist = LagHistogram()
    for chunk in np.array_split(lags, 5):
        hist = hist.merge(LagHistogram().update_many(chunk))
    for q in (0.5, 0.9, 0.1, 0.05):
        exact = float(np.quantile(lags, q, method="inverted_cdf")) / HOUR_MS
        resolution = 0.5 if exact < 48 else 12.0
        got = hist.quantile_hours(q)
        assert got is not None and abs(got - exact) <= resolution
    for days in (2, 7, 14, 30, 91):
        assert hist.within_days(days) == int(np.sum(lags < days * DAY))


# ------------------------------------------------------------------ the whole path


def sales_log(seed: int, *, weeks: int = 16, per_day: int = 120, degrade_from: int = 8,
              shift_from: int = 15, max_lag_days: int = 85) -> tuple[list[InferenceRecord], list[OutcomeRecord]]:
    """Predictions every day; outcomes 2–85 days later (log-normal: within the join TTL, whose
    crossing the tests above cover; the simulator's `sales` goes to 120); the model goes wrong on
    the predictions made from `degrade_from` weeks; its scores move from `shift_from` weeks."""
    rng = np.random.default_rng(seed)
    preds, outs = [], []
    for day in range(weeks * 7):
        for i in range(per_day):
            ts = T0 + day * DAY + int(rng.integers(0, DAY))
            p = float(rng.beta(2, 5))
            if day >= shift_from * 7:
                p = float(min(1.0, p + 0.25))
            truth = p if day < degrade_from * 7 else 1.0 - p
            pid = f"d{day}-{i}"
            preds.append(pred(pid, ts, p, float(rng.normal())))
            lag = int(min(max_lag_days - 1, max(2, rng.lognormal(3.3, 0.6))) * DAY) + int(rng.integers(0, DAY))
            outs.append(outc(pid, float(rng.random() < truth), ts + lag))
    return preds, outs


def fold_in_time_order(preds: list[InferenceRecord], outs: list[OutcomeRecord], until_ms: int) -> Store:
    """Day by day: the day's predictions in one batch, then the day's outcomes in one batch."""
    s = Store()
    by_day: dict[int, tuple[list[Any], list[Any]]] = defaultdict(lambda: ([], []))
    for r in preds:
        if r.timestamp_ms < until_ms:
            by_day[r.timestamp_ms // DAY][0].append(r)
    for o in outs:
        if o.timestamp_ms < until_ms:
            by_day[o.timestamp_ms // DAY][1].append(o)
    for day in sorted(by_day):
        day_preds, day_outs = by_day[day]
        for kind, records in (("f", day_preds), ("o", day_outs)):
            if records:
                s.apply(kind, s.batch(kind, sorted(records, key=lambda r: r.timestamp_ms)))
    s.expire()
    return s


def test_every_figure_of_the_outcome_clock_equals_numpy_on_the_raw_values() -> None:
    preds, outs = sales_log(11)
    end = T0 + 14 * WEEK  # six weeks after the model went wrong
    start = end - WEEK
    s = fold_in_time_order(preds, outs, end)
    parts = window_parts(s.partials.items(), 0, start, end, DAY, None)
    merged = merge_segments([parts["t:m"]])
    for basis in ("outcome", "prediction"):
        report = evaluate_key("t:m", merged, baseline_for=lambda t, m, v: BASELINE,
                              thresholds=Thresholds(performance_window=basis), job_run_id=f"r-{basis}",
                              window_start_ms=start, window_end_ms=end, detected_at="2026-12-01T00:00:00.000Z")
        for kind, doc in report.events:
            VALIDATORS.validate(kind, doc)
        (snap,) = report.of_kind("snapshot")
        by_id = {r.prediction_id: r for r in preds}
        pairs = [(by_id[o.prediction_id], o) for o in outs if o.timestamp_ms < end]
        arrived = [(r, o) for r, o in pairs if start <= max(r.timestamp_ms, o.timestamp_ms) < end]
        made = [(r, o) for r, o in pairs if start <= r.timestamp_ms < end]
        chosen = arrived if basis == "outcome" else made
        p = np.array([r.prediction for r, _ in chosen])
        y = np.array([o.outcome for _, o in chosen])
        assert snap["windowBasis"] == basis
        brier = snap["performance"]["brier"]
        assert brier["sampleSize"] == len(chosen) and brier["windowBasis"] == basis
        assert brier["value"] == pytest.approx(float(np.mean((p - y) ** 2)), abs=1e-12)
        cal = snap["calibration"]
        k = np.clip(np.floor(p * 10), 0, 9)
        ece = sum(np.sum(k == b) / p.size * abs(p[k == b].mean() - y[k == b].mean()) for b in np.unique(k))
        assert cal["ece"] == pytest.approx(ece, abs=1e-12)
        assert abs(cal["reliability"] - cal["resolution"] + cal["uncertainty"] + cal["withinBinVariance"]
                   - cal["withinBinCovariance"] - float(np.mean((p - y) ** 2))) <= 1e-12
        in_window = np.array([r.prediction for r in preds if start <= r.timestamp_ms < end])
        assert snap["expectedBrier"] == pytest.approx(float(np.mean(in_window * (1 - in_window))), abs=1e-12)
        expected = BASELINE.prediction.expected_shares()  # type: ignore[union-attr]
        counts, _ = BASELINE.prediction.bins.bin_values(list(in_window))  # type: ignore[union-attr]
        assert snap["prediction"]["value"] == pytest.approx(psi(expected, counts)[0], abs=1e-12)
        labels = snap["labels"]
        assert labels["expiredEarlyOutcomes"] == 0  # every lag is within the join TTL here
        assert labels["coverage"] == pytest.approx(len(made) / in_window.size, abs=1e-12)
        lags = np.array([o.timestamp_ms - r.timestamp_ms for r, o in arrived])
        for q, name in ((0.5, "lagP50Hours"), (0.9, "lagP90Hours")):
            exact = float(np.quantile(lags, q, method="inverted_cdf")) / HOUR_MS
            assert abs(labels[name] - exact) <= (0.5 if exact < 48 else 12.0)
        for row in labels["cohorts"][1:]:
            week = row["week"]
            cohort = [r for r in preds if end - (week + 1) * WEEK <= r.timestamp_ms < end - week * WEEK]
            assert row["predictions"] == len(cohort)
            labelled_at = {o.prediction_id: o.timestamp_ms for o in outs if o.timestamp_ms < end}
            within = sum(1 for r in cohort if r.prediction_id in labelled_at
                         and labelled_at[r.prediction_id] - r.timestamp_ms < row["ageDays"] * DAY)
            assert row["coverageAtAge"] == pytest.approx(within / len(cohort), abs=1e-12)
    by_basis = {}
    for basis in ("outcome", "prediction"):
        report = evaluate_key("t:m", merged, baseline_for=lambda t, m, v: BASELINE,
                              thresholds=Thresholds(performance_window=basis), job_run_id=f"x-{basis}",
                              window_start_ms=start, window_end_ms=end, detected_at="2026-12-01T00:00:00.000Z")
        by_basis[basis] = report
    # the window's predictions have almost no outcomes yet (insufficient_data); the
    # outcomes that arrived in the window are mostly those of the bad weeks
    assert by_basis["prediction"].of_kind("snapshot")[0]["performance"]["brier"]["status"] == "insufficient_data"
    degraded = [e for e in by_basis["outcome"].of_kind("degraded") if e["metric"] == "brier"]
    assert degraded and degraded[0]["windowBasis"] == "outcome" and degraded[0]["incidentStatus"] == "opened"


def test_prediction_drift_fires_in_the_week_the_scores_move_and_not_before() -> None:
    preds, outs = sales_log(12)
    statuses = {}
    s = fold_in_time_order(preds, outs, T0 + 16 * WEEK)  # later data does not reach a window's scores
    for week in (14, 15, 16):
        end = T0 + week * WEEK
        merged = merge_segments([window_parts(s.partials.items(), 0, end - WEEK, end, DAY, None)["t:m"]])
        report = evaluate_key("t:m", merged, baseline_for=lambda t, m, v: BASELINE, thresholds=Thresholds(),
                              job_run_id=f"w{week}", window_start_ms=end - WEEK, window_end_ms=end,
                              detected_at="2026-12-01T00:00:00.000Z")
        drift = [e for e in report.of_kind("drift") if e["kind"] == "prediction"]
        statuses[week] = report.of_kind("snapshot")[0]["prediction"]["status"], drift
    assert statuses[14][0] == "ok" and statuses[15][0] == "ok" and not statuses[15][1]
    assert statuses[16][0] == "drift"
    (event,) = statuses[16][1]
    assert event["feature"] == "prediction" and event["incidentStatus"] == "opened"
