"""Seeded simulations of the drift rule per feature shape: how often `psiLower >= warning`
fires with no drift, at a true PSI of exactly the threshold, and under real drifts.

Each repetition block builds a fresh baseline the way the project does (``numeric_edges`` /
``category_list`` on a reference sample of N draws, then ``FeatureBins.bin_values``), so the rates
include the baseline's own sampling noise; the current counts of the block are drawn at once from
the multinomial of the current population's share of each frozen bin (what binning M raw draws
gives), and go through ``psi_bound`` in one vectorised call. ``evaluate_feature`` uses the same
function, and tests/unit/test_psi_bound.py checks that its verdicts agree row for row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
from scipy.stats import norm

from model_monitoring.tables.baseline import FeatureBaseline
from model_monitoring.tables.binning import FeatureBins, category_list, numeric_edges
from model_monitoring.tables.psi import EPSILON
from model_monitoring.tables.psi_bound import psi_bound

WARNING = 0.1
CONFIDENCE = 0.95
MIN_SAMPLES = 100


def true_psi(actual: np.ndarray, expected: np.ndarray) -> float:
    """The population PSI, shares clipped as in the reported value."""
    a, e = np.maximum(actual, EPSILON), np.maximum(expected, EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def zipf(k: int, exponent: float = 1.1) -> np.ndarray:
    """Heavily skewed shares of k categories, most frequent first."""
    weights = 1.0 / np.arange(1, k + 1) ** exponent
    return weights / weights.sum()


def uniform(k: int) -> np.ndarray:
    return np.full(k, 1.0 / k)


def mixed_towards(shares: np.ndarray, target_psi: float) -> np.ndarray:
    """(1 − w)·shares + w·reversed(shares) with w chosen so that its PSI against ``shares`` is
    ``target_psi``: a skewed categorical whose rare values gain at the expense of the common ones."""
    low, high = 0.0, 1.0
    for _ in range(60):
        w = (low + high) / 2
        if true_psi((1 - w) * shares + w * shares[::-1], shares) < target_psi:
            low = w
        else:
            high = w
    return (1 - w) * shares + w * shares[::-1]


@dataclass(frozen=True)
class Frozen:
    """One baseline: its feature (bins and shares), and the population shares of each bin."""

    feature: FeatureBaseline
    baseline_population: np.ndarray  # the true share of each bin in the baseline's population
    current_population: np.ndarray  # the true share of each bin in the current population


# a scenario draws one baseline from its reference population and says what the current population is
Scenario = Callable[[np.random.Generator, int], Frozen]


def numeric(shift: float) -> Scenario:
    """A standard-normal feature, 10 baseline-decile bins; the current mean moved by ``shift`` sd."""

    def draw(rng: np.random.Generator, n: int) -> Frozen:
        sample = rng.standard_normal(n)
        bins = FeatureBins("x", "numeric", edges=numeric_edges(sample, 10))
        counts, _ = bins.bin_values(cast(Sequence[object], sample))  # an array: numeric_array takes it whole
        shares = counts / n
        feature = FeatureBaseline(bins, tuple(shares[:-1].tolist()), other=0.0, missing=float(shares[-1]))
        bounds = np.r_[-np.inf, bins.edges, np.inf]
        return Frozen(feature, np.r_[np.diff(norm.cdf(bounds)), 0.0], np.r_[np.diff(norm.cdf(bounds - shift)), 0.0])

    return draw


def categorical(reference: np.ndarray, current: np.ndarray | None = None) -> Scenario:
    """Categories 0..k−1 with ``reference`` shares; ``current`` has k shares, or k + 1 where the
    last is a value the baseline never saw. Every category seen in the reference sample gets a bin
    (``category_list`` with no cap, the hardest case: up to 200 sparse bins); the rest is ``other``."""
    k = reference.size
    names = [f"c{i:03d}" for i in range(k)]
    current_shares = np.r_[reference, 0.0] if current is None else np.r_[current, 0.0][: k + 1]

    def draw(rng: np.random.Generator, n: int) -> Frozen:
        codes = rng.choice(k, size=n, p=reference)
        listed = category_list([names[i] for i in codes], max_categories=k)
        index = [int(name[1:]) for name in listed]
        counts = np.bincount(codes, minlength=k)
        unlisted = np.setdiff1d(np.arange(k), index)
        bins = FeatureBins("x", "categorical", categories=tuple(listed))
        feature = FeatureBaseline(bins, tuple((counts[index] / n).tolist()),
                                  other=float(counts[unlisted].sum() / n), missing=0.0)
        unlisted_current = np.r_[unlisted, k]  # values without a bin, the unseen one included
        return Frozen(
            feature,
            np.r_[reference[index], reference[unlisted].sum(), 0.0],
            np.r_[current_shares[index], current_shares[unlisted_current].sum(), 0.0],
        )

    return draw


@dataclass(frozen=True)
class Rate:
    """How often the rule flagged, and the true PSI it faced (mean over the baselines)."""

    flagged: float
    true_psi: float
    repetitions: int


def flag_rate(scenario: Scenario, m: int, *, n: int, seed: int, baselines: int, per_baseline: int) -> Rate:
    """Share of repetitions with M >= min_samples and psiLower >= the warning threshold."""
    rng = np.random.default_rng(seed)
    flagged = 0
    psis = []
    for _ in range(baselines):
        frozen = scenario(rng, n)
        psis.append(true_psi(frozen.current_population, frozen.baseline_population))
        counts = rng.multinomial(m, frozen.current_population, size=per_baseline)
        bound = psi_bound(frozen.feature.expected_shares(), counts, n, epsilon=EPSILON)
        flagged += int(np.count_nonzero(bound.lower(CONFIDENCE) >= WARNING)) if m >= MIN_SAMPLES else 0
    return Rate(flagged / (baselines * per_baseline), float(np.mean(psis)), baselines * per_baseline)


NULL_SHAPES: dict[str, Scenario] = {
    "numeric, 10 deciles": numeric(0.0),
    **{f"categorical {k}, {name}": categorical(shares(k))
       for k in (2, 5, 20, 50, 200) for name, shares in (("uniform", uniform), ("zipf", zipf))},
}

# true PSI = the warning threshold itself: the rate here is the test's size at the boundary
BOUNDARY_SHAPES: dict[str, Scenario] = {
    "numeric, 0.32 sd shift": numeric(0.3235),
    **{f"zipf {k}, tilted to PSI 0.1": categorical(zipf(k), mixed_towards(zipf(k), 0.1)) for k in (5, 20, 50, 200)},
}

POWER_SHAPES: dict[str, Scenario] = {
    "numeric, 0.5 sd shift": numeric(0.5),
    **{f"zipf {k} + unseen value at 10%": categorical(zipf(k), np.r_[0.9 * zipf(k), 0.1]) for k in (5, 20, 50, 200)},
    **{f"zipf {k}, tilted to PSI 0.25": categorical(zipf(k), mixed_towards(zipf(k), 0.25)) for k in (5, 10, 20, 50, 200)},
}
