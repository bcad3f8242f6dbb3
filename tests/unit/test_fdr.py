"""Benjamini–Hochberg q-values against a direct step-up procedure and hand-computed values, and
false-discovery control over a model version's checks in the weekly run and in `check`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from model_monitoring.streams.settings import load_settings
from model_monitoring.tables.baseline import Baseline, FeatureBaseline
from model_monitoring.tables.binning import FeatureBins
from model_monitoring.tables.error_sums import PerformanceSums
from model_monitoring.tables.fdr import bh_q_values, with_q_values
from model_monitoring.tables.histogram import FeatureHistogram
from model_monitoring.tables.partial import PartialState
from model_monitoring.tables.psi import evaluate_feature
from model_monitoring.tables.run_evaluation import evaluate_key
from model_monitoring.tables.thresholds import Thresholds


def step_up_rejections(p_values: list[float], alpha: float) -> set[int]:
    """Benjamini & Hochberg (1995), as written: the largest k with p₍ₖ₎ <= k·α/m; reject the k
    smallest."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    k = max((rank for rank in range(1, m + 1) if p_values[order[rank - 1]] <= rank * alpha / m), default=0)
    return set(order[:k])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=0, max_size=40), st.floats(0.001, 0.5))
def test_q_values_reject_exactly_what_the_step_up_procedure_rejects(p_values: list[float], alpha: float) -> None:
    m = len(p_values)
    # away from exact ties of p·m/rank with α, where the two float computations may round apart
    assume(all(abs(p * m / r - alpha) > 1e-9 for p in p_values for r in range(1, m + 1)))
    q = bh_q_values(p_values)
    assert {i for i in range(m) if q[i] <= alpha} == step_up_rejections(p_values, alpha)
    assert np.all(q >= np.asarray(p_values) * (1 - 1e-12)) and np.all(q <= 1.0)
    order = np.argsort(p_values, kind="stable")
    assert np.all(np.diff(q[order]) >= 0)  # monotone in p


def test_q_values_equal_hand_computed_values() -> None:
    """m = 8: p·8/rank = .04 .036 .0507 .044 .0816 .1347 .4126 .387, then the running minimum
    from the largest p down."""
    p = [0.005, 0.009, 0.019, 0.022, 0.051, 0.101, 0.361, 0.387]
    expected = [0.036, 0.036, 0.044, 0.044, 0.0816, 0.101 * 8 / 6, 0.387, 0.387]
    assert bh_q_values(p) == pytest.approx(expected, rel=1e-12)
    assert bh_q_values([0.05, 0.01, 0.04, 0.02, 0.03]) == pytest.approx([0.05] * 5)  # order kept
    assert bh_q_values([0.2]).tolist() == [0.2] and bh_q_values([]).size == 0
    assert bh_q_values([0.9, 0.9, 0.01]) == pytest.approx([0.9, 0.9, 0.03])
    with pytest.raises(ValueError):
        bh_q_values([0.5, float("nan")])
    with pytest.raises(ValueError):
        bh_q_values([1.5])


def check(status: str, p: float | None, severity: str | None = None) -> dict[str, Any]:
    return {"metric": "psi", "value": 0.3, "status": status, "severity": severity, "threshold": 0.1,
            "pValue": p, "qValue": None}


def snapshot(segment: str | None, features: dict[str, Any], performance: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    return {"tenantId": "t", "modelId": "m", "modelVersion": "1", "segment": segment,
            "features": features, "performance": performance or {}}


def test_one_family_spans_every_segment_view_and_demotes_what_it_does_not_discover() -> None:
    snapshots = [
        snapshot(None, {"a": check("drift", 0.001, "critical"), "b": check("ok", 0.9), "c": check("ok", None)},
                 {"brier": {"status": "degraded", "pValue": 0.02}, "mae": {"status": "ok", "pValue": 0.5}}),
        snapshot("emea", {"a": check("drift", 0.02, "warning"), "b": check("ok", 0.7)},
                 {"brier": {"status": "degraded", "pValue": 0.001}}),
    ]
    out = with_q_values(snapshots, Thresholds(fdr_q=0.05))
    overall, emea = out
    # drift family: 0.001, 0.9, 0.02, 0.7 (m = 4); performance family: 0.02, 0.5, 0.001 (m = 3)
    assert overall["features"]["a"]["qValue"] == pytest.approx(0.004)
    assert emea["features"]["a"]["qValue"] == pytest.approx(0.04)
    assert overall["features"]["b"]["qValue"] == pytest.approx(0.9)
    assert overall["features"]["c"]["qValue"] is None  # no test, not in the family
    assert [overall["features"]["a"]["status"], emea["features"]["a"]["status"]] == ["drift", "drift"]
    assert overall["performance"]["brier"]["qValue"] == pytest.approx(0.03)
    assert emea["performance"]["brier"]["qValue"] == pytest.approx(0.003)
    assert overall["performance"]["mae"]["qValue"] == pytest.approx(0.5)

    strict = with_q_values(snapshots, Thresholds(fdr_q=0.01))
    assert strict[0]["features"]["a"]["status"] == "drift"
    assert (strict[1]["features"]["a"]["status"], strict[1]["features"]["a"]["severity"],
            strict[1]["features"]["a"]["threshold"]) == ("insufficient_data", None, 0.1)
    assert [s["performance"]["brier"]["status"] for s in strict] == ["ok", "degraded"]
    assert snapshots[1]["features"]["a"]["status"] == "drift"  # the input is left as it was


def test_fdr_q_zero_turns_the_control_off_but_still_reports_q_values() -> None:
    snapshots = [snapshot(None, {f"f{i}": check("drift" if i == 0 else "ok", 0.04 if i == 0 else 0.8, "warning"
                                                if i == 0 else None) for i in range(10)})]
    off = with_q_values(snapshots, Thresholds(fdr_q=0.0))
    assert off[0]["features"]["f0"]["status"] == "drift"
    assert off[0]["features"]["f0"]["qValue"] == pytest.approx(0.4)
    on = with_q_values(snapshots, Thresholds(fdr_q=0.05))
    assert on[0]["features"]["f0"]["status"] == "insufficient_data"


def test_the_prediction_score_check_belongs_to_the_drift_family() -> None:
    snap = snapshot(None, {"a": check("drift", 0.01, "warning")})
    snap["prediction"] = check("drift", 0.03, "warning")
    out = with_q_values([snap], Thresholds(fdr_q=0.05))[0]
    assert out["prediction"]["qValue"] == pytest.approx(0.03) and out["features"]["a"]["qValue"] == pytest.approx(0.02)


UNIFORM = FeatureBaseline(FeatureBins("x0", "numeric", edges=tuple(float(i) for i in range(1, 10))),
                          (0.1,) * 10, other=0.0, missing=0.0)


def marginal_drift_counts(m: int = 1_000) -> tuple[np.ndarray, float]:
    """Counts whose own test is just significant (psiLower >= 0.1, p in (0.005, 0.04))."""
    tilted = np.exp(2 * np.linspace(-1, 1, 10))
    tilted /= tilted.sum()
    for w in np.linspace(0.0, 1.0, 2_001):
        counts = np.round(np.r_[0.1 * (1 - w) + w * tilted, 0.0] * m).astype(np.int64)
        verdict = evaluate_feature(UNIFORM, counts, 20_000, Thresholds(), "m")
        if verdict.p_value is not None and 0.005 < verdict.p_value < 0.04:
            return counts, verdict.p_value
    raise AssertionError("no marginal drift found")


def baseline(features: int) -> Baseline:
    return Baseline(None, "m", "1", "classification", 20_000,
                    {f"x{i}": FeatureBaseline(FeatureBins(f"x{i}", "numeric", edges=UNIFORM.bins.edges),
                                              UNIFORM.proportions, 0.0, 0.0) for i in range(features)},
                    brier=None, mae=None)


@pytest.mark.parametrize("fdr_q,published", [(0.05, False), (0.0, True)])
def test_weekly_run_publishes_a_drift_only_when_discovered_in_its_version_family(fdr_q: float, published: bool) -> None:
    """One just-significant drift (p ≈ 0.01) among 10 features x 3 views, the rest without drift:
    its q-value is about 30·p > 0.05, so with FDR control on it is no alert."""
    base = baseline(10)
    drifting, p_value = marginal_drift_counts()
    still = np.full(11, 100)
    still[-1] = 0
    views = {}
    for segment in (None, "emea", "apac"):
        counts = {f"x{i}": tuple(int(c) for c in (drifting if (segment, i) == ("emea", 3) else still))
                  for i in range(10)}
        views[("1", segment)] = PartialState(FeatureHistogram(counts, {}, 1_000, base.fingerprint()),
                                             PerformanceSums.empty())
    report = evaluate_key("t:m", views, baseline_for=lambda t, m, v: base, thresholds=Thresholds(fdr_q=fdr_q),
                          job_run_id="run-1", window_start_ms=0, window_end_ms=86_400_000,
                          detected_at="2026-11-29T06:00:00.000Z")
    emea = next(s for s in report.of_kind("snapshot") if s["segment"] == "emea")
    x3 = emea["features"]["x3"]
    assert x3["pValue"] == pytest.approx(p_value) and x3["qValue"] == pytest.approx(min(1.0, 30 * p_value))
    assert x3["psiLower"] >= 0.1
    assert all(c["qValue"] is not None for s in report.of_kind("snapshot") for c in s["features"].values())
    drift = report.of_kind("drift")
    assert len(drift) == int(published) and report.counts["driftDetected"] == int(published)
    assert x3["status"] == ("drift" if published else "insufficient_data")
    if published:
        assert drift[0]["feature"] == "x3" and drift[0]["segment"] == "emea"
        assert (drift[0]["psiLower"], drift[0]["pValue"], drift[0]["qValue"]) == (x3["psiLower"], x3["pValue"],
                                                                                    x3["qValue"])


def test_the_level_is_a_setting_that_reaches_the_thresholds() -> None:
    assert load_settings({}).thresholds().fdr_q == 0.05
    assert load_settings({"MODEL_MONITORING_FDR_Q": "0.1"}).thresholds().fdr_q == 0.1
    assert load_settings({"MODEL_MONITORING_FDR_Q": "0"}).thresholds().fdr_q == 0.0
    for bad in ("1", "-0.1", "x"):
        with pytest.raises(ValidationError):
            load_settings({"MODEL_MONITORING_FDR_Q": bad})
