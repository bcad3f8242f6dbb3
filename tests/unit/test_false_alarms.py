"""False alarms, size at the threshold and power of the drift rule (psiLower >= 0.1 at 95%), by
seeded simulation per feature shape (tests/support/drift_simulation.py: a fresh N = 5,000
baseline per block through the project's binning, current counts from the current population).
`bench/psi_bound_table.py` prints the same table with more repetitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from model_monitoring.tables.psi import EPSILON, evaluate_feature, psi
from model_monitoring.tables.psi_bound import psi_bound
from model_monitoring.tables.thresholds import Thresholds
from tests.support.drift_simulation import (
    BOUNDARY_SHAPES,
    NULL_SHAPES,
    POWER_SHAPES,
    categorical,
    flag_rate,
    zipf,
)

N = 5_000
SEED = 20_261_212


@pytest.mark.parametrize("m", [100, 300, 1_000, 5_000])
@pytest.mark.parametrize("shape", list(NULL_SHAPES))
def test_no_drift_false_alarms_stay_far_below_five_percent(shape: str, m: int) -> None:
    rate = flag_rate(NULL_SHAPES[shape], m, n=N, seed=SEED + m, baselines=8, per_baseline=250)
    print(f"{shape}, M={m}: {rate.flagged:.2%} flagged")
    assert rate.flagged < 0.03
    if m >= 300:
        assert rate.flagged < 0.005


@pytest.mark.parametrize("shape", ["numeric, 0.5 sd shift", "zipf 5 + unseen value at 10%",
                                   "zipf 20 + unseen value at 10%", "zipf 200 + unseen value at 10%",
                                   "zipf 5, tilted to PSI 0.25", "zipf 10, tilted to PSI 0.25",
                                   "zipf 20, tilted to PSI 0.25"])
def test_power_at_m_1000_is_at_least_99_percent(shape: str) -> None:
    rate = flag_rate(POWER_SHAPES[shape], 1_000, n=N, seed=SEED, baselines=10, per_baseline=300)
    print(f"{shape}: true PSI {rate.true_psi:.3f}, flagged {rate.flagged:.2%}")
    assert rate.true_psi >= 0.23
    assert rate.flagged >= 0.99


@pytest.mark.parametrize("shape", ["zipf 50, tilted to PSI 0.25", "zipf 200, tilted to PSI 0.25"])
def test_power_on_sparse_many_valued_features_at_m_1000(shape: str) -> None:
    """50 values reach the issue's 99% only just (99.2% in bench/psi_bound_table.py); 200 values,
    every one listed, stay below it by necessity: with N = 5,000 and M = 1,000 the estimate's own
    spread (sd ≈ 0.053 under this drift) lets no rule of size 5% at a true PSI of 0.1 flag more
    than ≈ 95% (tests/unit/test_psi_bound.py has the figures, also for N = 20,000)."""
    rate = flag_rate(POWER_SHAPES[shape], 1_000, n=N, seed=SEED, baselines=40, per_baseline=75)
    print(f"{shape}: true PSI {rate.true_psi:.3f}, flagged {rate.flagged:.2%}")
    assert rate.flagged >= (0.96 if "50" in shape else 0.88)


@pytest.mark.parametrize("m", [300, 1_000, 5_000])
@pytest.mark.parametrize("shape", ["numeric, 0.32 sd shift", "zipf 5, tilted to PSI 0.1",
                                   "zipf 20, tilted to PSI 0.1", "zipf 50, tilted to PSI 0.1"])
def test_at_a_true_psi_of_the_threshold_the_rule_flags_about_five_percent_or_less(shape: str, m: int) -> None:
    """The boundary of H0 (true PSI = 0.1 exactly): the test's size. Many-valued sparse features
    (200 values, all in the baseline) run a little over, 5-8%: see bench/psi_bound_table.py."""
    rate = flag_rate(BOUNDARY_SHAPES[shape], m, n=N, seed=SEED + m, baselines=40, per_baseline=50)
    print(f"{shape}, M={m}: true PSI {rate.true_psi:.3f}, flagged {rate.flagged:.2%}")
    assert abs(rate.true_psi - 0.1) < 0.002
    assert rate.flagged <= 0.065


def old_chi2_gate_rule(expected: np.ndarray, counts: np.ndarray, n: int) -> bool:
    """The rule this replaces: PSI >= 0.1 and PSI over χ²₀.₉₅(B−1)·(1 + B/2M)/M + (1 + B/2N)/N."""
    value, _ = psi(expected, counts)
    b, m = expected.size, int(counts.sum())
    gate = chi2.ppf(0.95, b - 1) * ((1 + b / (2 * m)) / m + (1 + b / (2 * n)) / n)
    return value >= 0.1 and value > gate


@pytest.mark.parametrize("k,m", [(20, 100), (50, 300)])
def test_many_valued_categories_no_longer_raise_the_old_false_alarms(k: int, m: int) -> None:
    """The issue measured 33% (20 values, M = 100) and 45% (50 values, M = 300) false alarms of
    the χ² gate on Zipf-shaped categories; the same draws through `evaluate_feature` now."""
    rng = np.random.default_rng(SEED + k)
    old = new = 0
    repetitions = 0
    for _ in range(4):
        frozen = categorical(zipf(k))(rng, N)
        expected = frozen.feature.expected_shares()
        for counts in rng.multinomial(m, frozen.current_population, size=150):
            old += old_chi2_gate_rule(expected, counts, N)
            new += evaluate_feature(frozen.feature, counts, N, Thresholds(), "m").status == "drift"
            repetitions += 1
    print(f"{k} values, M={m}: old rule {old / repetitions:.1%}, new rule {new / repetitions:.1%}")
    assert old / repetitions > 0.10
    assert new / repetitions < 0.03


def test_the_simulation_measures_what_evaluate_feature_decides() -> None:
    """The simulations call `psi_bound` on many rows at once; `evaluate_feature`, one check at a
    time, flags exactly the same rows (drift when M >= min_samples and psiLower >= 0.1)."""
    rng = np.random.default_rng(SEED)
    for scenario in (POWER_SHAPES["zipf 20, tilted to PSI 0.25"], NULL_SHAPES["categorical 200, zipf"]):
        frozen = scenario(rng, N)
        for m in (100, 300):
            counts = rng.multinomial(m, frozen.current_population, size=200)
            flags = psi_bound(frozen.feature.expected_shares(), counts, N, epsilon=EPSILON).lower(0.95) >= 0.1
            verdicts = [evaluate_feature(frozen.feature, c, N, Thresholds(), "m") for c in counts]
            assert [v.status == "drift" for v in verdicts] == flags.tolist()
