"""Alert quality of a fleet: false alerts with no drift, and the lifecycle of injected incidents.

    .venv/bin/python bench/alert_quality.py [--seed 7] [--weeks 26]

A fleet of 3 tenants x 4 models (one version each), 25 features per model (10 numeric of several
shapes, 15 categorical with 2-200 values, uniform or Zipf-skewed, up to 200 baseline categories),
4 segments of unequal size (60%, 30%, 10% of the model's traffic, and one of 50-500 events a
week), is evaluated weekly through the project's own code: baselines from `build_baseline` on a
20,000-record reference sample, each segment-week's counts as `FeatureHistogram`s and its error
sums as `PerformanceSums` (outcomes arrive within a day, so a week's predictions all have theirs),
merged with `merge_segments`, and `evaluate_key` with the incident book carried from run to run:
the drift rule, false-discovery control, grouping and incidents exactly as the service runs them.
Counts are drawn from the multinomial of each bin's population share (what binning the raw
events gives); numeric shares come from 200,000 draws binned by `FeatureBins.bin_codes`.

- Case A, no drift: every alert (an `opened` or `escalated` event) is false.
- Case B, 5 injected incidents, each starting in some week and stopping later: a 0.5 sd mean
  shift, an unseen category at 10%, a skewed categorical tilted to PSI 0.3, and two accuracy
  drops: outcomes flipped at the rate that raises the expected Brier by 40% and by 25% (MAE
  rises by the same amount, half as much relative to its baseline; brier and mae are separate
  incidents by contract). An alert on an injected (model, feature or metric) from its start to
  two runs after its stop belongs to it; any other is false. `effect` is the true PSI over the
  frozen bins, or the expected relative rise of brier / mae.

Prints a table, then one JSON line. Seeded and deterministic.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_monitoring.schemas.timestamps import format_timestamp  # noqa: E402
from model_monitoring.streams.settings import load_settings  # noqa: E402
from model_monitoring.tables.baseline import Baseline, FeatureBaseline  # noqa: E402
from model_monitoring.tables.baseline_build import build_baseline  # noqa: E402
from model_monitoring.tables.error_sums import PerformanceSums  # noqa: E402
from model_monitoring.tables.evaluation_state import merge_segments  # noqa: E402
from model_monitoring.tables.histogram import FeatureHistogram  # noqa: E402
from model_monitoring.tables.incidents import IncidentBook  # noqa: E402
from model_monitoring.tables.partial import PartialState  # noqa: E402
from model_monitoring.tables.run_evaluation import evaluate_key  # noqa: E402
from tests.support.drift_simulation import mixed_towards, true_psi, uniform, zipf  # noqa: E402

TENANTS = ("acme", "globex", "initech")
MODELS = ("risk", "churn", "upsell", "fraud")
SEGMENTS = ("emea", "amer", "apac", "latam")  # latam: 50-500 events a week
SHARES = (0.6, 0.3, 0.1)
WEEKLY_EVENTS = (12_000, 5_000, 2_500, 1_200)  # per model of each tenant
REFERENCE_SIZE = 20_000
OUTCOME_RATE = 0.9
VERSION = "1"
WEEK_MS = 7 * 86_400_000
START_MS = 1_790_000_000_000 - 1_790_000_000_000 % 86_400_000
POPULATION_DRAWS = 200_000

Sampler = Callable[[np.random.Generator, int], np.ndarray]  # float values, NaN = missing

NUMERIC: dict[str, Sampler] = {
    "amount": lambda r, n: r.lognormal(7.0, 0.8, n),
    "age_days": lambda r, n: np.where(r.random(n) < 0.05, np.nan, r.gamma(2.0, 30.0, n)),
    "score": lambda r, n: r.standard_normal(n),
    "discount": lambda r, n: np.where(r.random(n) < 0.9, 0.0, r.uniform(0.05, 0.4, n)),
    "contacts": lambda r, n: r.poisson(3.0, n).astype(float),
    "tenure": lambda r, n: r.exponential(12.0, n),
    "balance": lambda r, n: np.where(r.random(n) < 0.02, np.nan, r.normal(1000.0, 300.0, n)),
    "visits": lambda r, n: r.poisson(0.7, n).astype(float),
    "ratio": lambda r, n: r.beta(2.0, 5.0, n),
    "latency": lambda r, n: r.lognormal(3.0, 1.2, n),
}
# (name, categories, shares, missing share)
CATEGORICAL: tuple[tuple[str, int, Callable[[int], np.ndarray], float], ...] = (
    ("flag", 2, uniform, 0.0), ("plan", 3, zipf, 0.01), ("channel", 4, uniform, 0.0),
    ("device", 6, zipf, 0.02), ("tier", 10, uniform, 0.0), ("industry", 20, zipf, 0.01),
    ("region", 30, uniform, 0.0), ("source", 50, zipf, 0.03), ("country", 80, zipf, 0.0),
    ("city", 120, zipf, 0.01), ("product", 200, zipf, 0.0), ("gender", 2, zipf, 0.05),
    ("language", 5, zipf, 0.0), ("campaign", 150, uniform, 0.0), ("team", 15, zipf, 0.0),
)


@dataclass(frozen=True)
class Injection:
    """An incident of case B: from week `start` (its first run) until before week `stop`."""

    name: str
    model_key: str
    kind: str  # shift | unseen | tilt | accuracy
    subject: str  # the feature, or "brier,mae"
    start: int
    stop: int
    strength: float  # sd of the shift, share of the unseen value, PSI of the tilt, relative Brier rise

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(self.subject.split(","))

    def active(self, week: int) -> bool:
        return self.start <= week < self.stop


INJECTIONS = (
    Injection("numeric mean shift 0.5 sd", "acme:risk", "shift", "score", 3, 8, 0.5),
    Injection("unseen category at 10%", "globex:churn", "unseen", "industry", 6, 11, 0.10),
    Injection("zipf-50 tilted to PSI 0.3", "initech:upsell", "tilt", "source", 12, 17, 0.30),
    Injection("accuracy drop, Brier +40%", "acme:churn", "accuracy", "brier,mae", 9, 14, 0.40),
    Injection("accuracy drop, Brier +25%", "initech:risk", "accuracy", "brier,mae", 17, 22, 0.25),
)


@dataclass
class Model:
    key: str
    weekly_events: int
    beta: tuple[float, float]
    baseline: Baseline
    population: dict[str, np.ndarray]  # feature -> true share of each baseline bin (no drift)
    categorical: dict[str, np.ndarray] = field(default_factory=dict)  # feature -> category shares
    sd: dict[str, float] = field(default_factory=dict)  # numeric feature -> population sd


def category_names(k: int) -> list[str]:
    return [f"v{i:03d}" for i in range(k)]


def build_model(index: int, key: str, weekly: int, seed: int) -> Model:
    rng = np.random.default_rng([seed, 1, index])
    beta = (2.0 + 0.3 * index, 5.0 - 0.2 * index)
    n = REFERENCE_SIZE
    columns: dict[str, list[Any]] = {}
    for name, sampler in NUMERIC.items():
        values = sampler(rng, n)
        columns[name] = values.tolist()  # NaN is a missing value, as null is
    shares_of: dict[str, np.ndarray] = {}
    for name, k, shape, missing in CATEGORICAL:
        shares = shape(k) * (1.0 - missing)
        shares_of[name] = shares
        codes = rng.choice(k + 1, size=n, p=np.r_[shares, missing])
        names = category_names(k)
        columns[name] = [names[c] if c < k else None for c in codes.tolist()]
    p = rng.beta(*beta, n)
    y = (rng.random(n) < p).astype(int)
    records = [{"predictionId": f"ref-{i}", "prediction": float(p[i]), "outcome": int(y[i]),
                "features": {name: column[i] for name, column in columns.items()}} for i in range(n)]
    tenant, model = key.split(":")
    baseline = build_baseline(records, model_id=model, model_version=VERSION, tenant_id=tenant,
                              task="classification", max_categories=200)
    out = Model(key, weekly, beta, baseline, {}, shares_of)
    for name in NUMERIC:
        out.population[name], out.sd[name] = numeric_population(baseline.features[name], name, seed, index, 0.0, None)
    for name, *_ in CATEGORICAL:
        out.population[name] = categorical_population(baseline.features[name], shares_of[name], missing_of(name))
    return out


def missing_of(name: str) -> float:
    return next(m for n, _, _, m in CATEGORICAL if n == name)


def numeric_population(feature: FeatureBaseline, name: str, seed: int, index: int, shift: float,
                       sd: float | None) -> tuple[np.ndarray, float]:
    """The true share of each bin: POPULATION_DRAWS draws binned by the feature's own bins."""
    rng = np.random.default_rng([seed, 2, index, list(NUMERIC).index(name)])
    values = NUMERIC[name](rng, POPULATION_DRAWS)
    spread = float(np.nanstd(values)) if sd is None else sd
    values = values + shift * spread
    codes, _ = feature.bins.bin_codes(values.tolist())
    return np.bincount(codes, minlength=feature.bins.n_bins) / POPULATION_DRAWS, spread


def categorical_population(feature: FeatureBaseline, shares: np.ndarray, missing: float,
                           unseen: float = 0.0) -> np.ndarray:
    """The true share of each bin: listed categories, `other` (unlisted and unseen values), missing."""
    index = {name: i for i, name in enumerate(category_names(shares.size))}
    scale = 1.0 - unseen
    listed = np.array([shares[index[c]] * scale for c in feature.bins.categories])
    other = 1.0 - missing - listed.sum()
    return np.r_[listed, max(other, 0.0), missing]


def flip_rate(model: Model, brier_rise: float) -> tuple[float, float]:
    """The share of outcomes to flip so that the expected Brier rises by `brier_rise` (relative),
    and the relative rise of the MAE that comes with it. Flipping y ~ Bernoulli(p) at rate s adds
    s·E[(1 − 2p)²] to both E[(p − y)²] and E|p − y| (whose baselines are E[p(1 − p)] and twice it)."""
    a, b = model.beta
    mean = a / (a + b)
    second = mean**2 + a * b / ((a + b) ** 2 * (a + b + 1))
    brier = mean - second
    rise = 1.0 - 4.0 * mean + 4.0 * second
    flips = brier_rise * brier / rise
    return flips, flips * rise / (2.0 * brier)


def drifted_population(model: Model, injection: Injection, seed: int, index: int) -> dict[str, np.ndarray]:
    feature = model.baseline.features[injection.subject]
    name = injection.subject
    if injection.kind == "shift":
        shares, _ = numeric_population(feature, name, seed, index, injection.strength, model.sd[name])
    elif injection.kind == "unseen":
        shares = categorical_population(feature, model.categorical[name], missing_of(name), injection.strength)
    else:  # tilt
        base = model.categorical[name] / model.categorical[name].sum()
        tilted = mixed_towards(base, injection.strength) * model.categorical[name].sum()
        shares = categorical_population(feature, tilted, missing_of(name))
    return {**model.population, name: shares}


def segment_sizes(rng: np.random.Generator, weekly: int) -> list[int]:
    total = int(rng.poisson(weekly))
    return [int(total * s) for s in SHARES] + [int(rng.integers(50, 501))]


def week_states(model: Model, population: dict[str, np.ndarray], flipped: float, rng: np.random.Generator
                ) -> dict[tuple[str, str | None], PartialState]:
    sizes = segment_sizes(rng, model.weekly_events)
    counts = {name: rng.multinomial(sizes, shares) for name, shares in population.items()}
    fingerprint = model.baseline.fingerprint()
    parts = []
    for s, segment in enumerate(SEGMENTS):
        histogram = FeatureHistogram({name: tuple(c[s].tolist()) for name, c in counts.items()}, {}, sizes[s],
                                     fingerprint)
        answered = int(rng.binomial(sizes[s], OUTCOME_RATE))
        p = rng.beta(*model.beta, answered)
        y = (rng.random(answered) < p) ^ (rng.random(answered) < flipped)
        parts.append({(VERSION, segment): PartialState(histogram, PerformanceSums().update_many(p, y.astype(float)))})
    return merge_segments(parts)


@dataclass
class Alerting:
    """What one case published, event by event: (week, model key, kind, subject, segment, status, incidentId)."""

    events: list[tuple[int, str, str, str, str | None, str, str]] = field(default_factory=list)
    checks: Counter[str] = field(default_factory=Counter)

    def alerts(self) -> list[tuple[int, str, str, str, str | None, str, str]]:
        return [e for e in self.events if e[5] in ("opened", "escalated")]


def run_case(models: list[Model], injections: tuple[Injection, ...], weeks: int, seed: int, case: int) -> Alerting:
    s = load_settings({})
    thresholds, policy = s.thresholds(), s.incident_policy()
    out = Alerting()
    for index, model in enumerate(models):
        book = IncidentBook()
        ours = [i for i in injections if i.model_key == model.key]
        drifted = {i.name: drifted_population(model, i, seed, index) for i in ours if i.kind != "accuracy"}
        for week in range(weeks):
            rng = np.random.default_rng([seed, 3, case, index, week])
            population = model.population
            flipped = 0.0
            for injection in ours:
                if injection.active(week):
                    if injection.kind == "accuracy":
                        flipped, _ = flip_rate(model, injection.strength)
                    else:
                        population = drifted[injection.name]
            end = START_MS + (week + 1) * WEEK_MS
            def baseline_for(tenant: str | None, model_id: str, version: str,
                             b: Baseline = model.baseline) -> Baseline:
                return b

            report = evaluate_key(model.key, week_states(model, population, flipped, rng),
                                  baseline_for=baseline_for, thresholds=thresholds,
                                  job_run_id=f"week-{week:02d}", window_start_ms=end - WEEK_MS, window_end_ms=end,
                                  detected_at=format_timestamp(end), incidents=book, policy=policy)
            book = report.incidents
            out.checks.update(driftChecked=report.counts["driftChecked"],
                              performanceChecked=report.counts["performanceChecked"])
            for kind, doc in report.events:
                if kind == "snapshot":
                    checks = [*doc["features"].values(), *doc["performance"].values()]
                    out.checks.update(
                        nominal=sum(1 for c in checks if c and c.get("pValue") is not None and c["pValue"] < 0.05),
                        in_breach=sum(1 for c in checks if c and c.get("status") in ("drift", "degraded")))
                    continue
                status = doc.get("incidentStatus") or kind  # resolved / recovered
                subject = doc.get("feature") or doc["metric"]
                out.events.append((week, model.key, kind, subject, doc["segment"], status, doc["incidentId"]))
    return out


def belongs(event: tuple[int, str, str, str, str | None, str, str], injection: Injection) -> bool:
    week, key, _, subject, *_ = event
    return key == injection.model_key and subject in injection.subjects and injection.start <= week <= injection.stop + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--weeks", type=int, default=26)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    keys = [f"{t}:{m}" for t in TENANTS for m in MODELS]
    models = [build_model(i, key, WEEKLY_EVENTS[i % len(MODELS)], args.seed) for i, key in enumerate(keys)]
    built = time.perf_counter() - started
    model_weeks = len(models) * args.weeks

    quiet = run_case(models, (), args.weeks, args.seed, case=0)
    false_a = quiet.alerts()
    opened_a = [e for e in false_a if e[5] == "opened"]
    print(f"Fleet: {len(TENANTS)} tenants x {len(MODELS)} models, 25 features (10 numeric, 15 categorical "
          f"with 2-200 values), segments {', '.join(SEGMENTS)} ({', '.join(f'{s:.0%}' for s in SHARES)} "
          f"and 50-500 events), {args.weeks} weekly runs; baselines of {REFERENCE_SIZE:,} records "
          f"(built in {built:.0f} s)")
    print(f"\nCase A, no drift: {model_weeks} model-weeks, {quiet.checks['driftChecked']:,} drift and "
          f"{quiet.checks['performanceChecked']:,} performance checks")
    print(f"  checks with p < 0.05 (one test alone) {quiet.checks['nominal']:>4}   "
          f"in breach after false-discovery control: {quiet.checks['in_breach']}")
    print(f"  alerts (opened or escalated)        {len(false_a):>6}   ({len(false_a) / args.weeks:.3f} per run)")
    print(f"  incidents opened                    {len(opened_a):>6}   "
          f"({100 * len(opened_a) / model_weeks:.2f} per 100 model-weeks)")
    print(f"  ongoing updates, resolutions        {sum(e[5] == 'ongoing' for e in quiet.events):>6}, "
          f"{sum(e[5] in ('resolved', 'recovered') for e in quiet.events)}")
    for e in false_a:
        print(f"    false alert: week {e[0]} {e[1]} {e[2]} {e[3]} segment={e[4]} {e[5]}")

    injected = run_case(models, INJECTIONS, args.weeks, args.seed, case=1)
    rows: list[dict[str, Any]] = []
    for injection in INJECTIONS:
        model = models[keys.index(injection.model_key)]
        if injection.kind == "accuracy":
            _, mae_rise = flip_rate(model, injection.strength)
            effect = f"+{injection.strength:.0%} / +{mae_rise:.0%}"
        else:
            drifted = drifted_population(model, injection, args.seed, keys.index(injection.model_key))
            effect = f"PSI {true_psi(drifted[injection.subject], model.population[injection.subject]):.3f}"
        ours = [e for e in injected.events if belongs(e, injection)]
        opened = [e for e in ours if e[5] == "opened"]
        alerts = [e for e in ours if e[5] in ("opened", "escalated")]
        per_subject = Counter(e[3] for e in opened)
        detected_week = min((e[0] for e in opened if injection.active(e[0])), default=None)
        ids = {e[6] for e in opened}
        resolved_at = {e[6]: e[0] for e in ours if e[5] in ("resolved", "recovered") and e[6] in ids}
        never = 10**6
        runs_after = max((resolved_at.get(i, never) - injection.stop + 1 for i in ids), default=None)
        early = min((resolved_at.get(i, never) - injection.stop + 1 for i in ids), default=None)
        rows.append({
            "name": injection.name, "key": injection.model_key, "subject": injection.subject, "effect": effect,
            "weeks": f"{injection.start}-{injection.stop - 1}",
            "detected": detected_week is not None,
            "weeks_to_detect": None if detected_week is None else detected_week - injection.start + 1,
            "opened": len(opened), "opened_max_per_subject": max(per_subject.values(), default=0),
            "alerts": len(alerts), "resolved_runs_after_stop": runs_after,
            # every incident it opened resolved in the first or second run after it stopped, none before
            "resolved_within_2_runs": runs_after is not None and early is not None and 1 <= early <= runs_after <= 2,
            "resolved_before_stop": early is not None and early < 1,
        })
    false_b = [e for e in injected.alerts() if not any(belongs(e, i) for i in INJECTIONS)]
    print(f"\nCase B, {len(INJECTIONS)} injected incidents (weeks counted from 0; resolved: runs after the stop)")
    header = (f"  {'incident':<27} {'model':<15} {'subject':<10} {'effect':<12} {'weeks':<6} {'detected':>8} "
              f"{'opened':>6} {'alerts':>6} {'resolved':>9}")
    print(header)
    for r in rows:
        detect = "never" if r["weeks_to_detect"] is None else f"week {r['weeks_to_detect']}"
        after = r["resolved_runs_after_stop"]
        resolved = ("never" if after is None or after > 1000 else "before stop" if r["resolved_before_stop"]
                    else f"run {after}")
        print(f"  {r['name']:<27} {r['key']:<15} {r['subject']:<10} {r['effect']:<12} {r['weeks']:<6} {detect:>8} "
              f"{r['opened']:>6} {r['alerts']:>6} {resolved:>9}")
    print("  (detected: the week of the incident its first alert came in; opened/alerts: events, brier and mae\n"
          "   count apart; resolved: the run after the stop in which its last incident resolved)")
    print(f"  other alerts (false) in case B      {len(false_b):>6}")
    for e in false_b:
        print(f"    false alert: week {e[0]} {e[1]} {e[2]} {e[3]} segment={e[4]} {e[5]}")
    weeks_to_detect = [r["weeks_to_detect"] for r in rows if r["weeks_to_detect"] is not None]
    result = {
        "false_alerts_per_run": round(len(false_a) / args.weeks, 4),
        "false_incidents_per_100_model_weeks": round(100 * len(opened_a) / model_weeks, 4),
        "incidents_injected": len(INJECTIONS),
        "incidents_detected": sum(r["detected"] for r in rows),
        "opened_per_incident": max(r["opened_max_per_subject"] for r in rows),
        "max_weeks_to_detect": max(weeks_to_detect) if weeks_to_detect else None,
        "resolved_within_2_runs": sum(r["resolved_within_2_runs"] for r in rows),
        "resolved_before_stop": sum(r["resolved_before_stop"] for r in rows),
        "case_b_false_alerts": len(false_b),
        "model_weeks": model_weeks,
        "seed": args.seed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"\n{result['seconds']:.0f} s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
