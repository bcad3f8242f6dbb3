"""Calibration of a classifier: reliability bins of the predicted probability, each with count,
Σp, Σp², Σy and Σpy kept exactly (integer multiples of 2**-1074, as tables/error_sums.py), and
what they give: ECE, and the Murphy decomposition of the Brier score with the two within-bin
terms of Stephenson, Coelho and Jolliffe (2008) that make it exact for continuous probabilities:

    Brier = reliability − resolution + uncertainty + withinBinVariance − withinBinCovariance

Per bin k (n, Σp, Σp², Σy, Σpy; y in {0, 1} so Σy² = Σy), over N pairs:
reliability = Σ n(p̄−ȳ)²/N, resolution = Σ n(ȳ−ȳ*)²/N, uncertainty = ȳ*(1−ȳ*),
withinBinVariance = Σ (Σp² − (Σp)²/n)/N, withinBinCovariance = 2·Σ (Σpy − ΣpΣy/n)/N.
The terms are computed in exact rational arithmetic from the exact sums and rounded once each,
so they sum to the Brier of the same pairs to a few ulps.

ECE is judged against its own sampling distribution (`ece_test`): under perfect calibration
each bin's Σy − Σp is a sum of independent centred Bernoulli deviations with variance
Σp(1−p) = Σp − Σp², so the null ECE = Σ|Dₖ|/N with Dₖ ~ N(0, Σp−Σp²). Its quantiles are drawn by
Monte Carlo with a fixed seed (the same on every replay). A miscalibration of at most c in the
ECE sense cannot raise the observed ECE by more than c over the noise (|g + d| ≤ |g| + |d|), so
"degraded when ECE > c + q₁₋α(null ECE)" is a conservative level-α test of "true ECE ≤ c", with
c the baseline's own excess ECE (its ECE less its null mean at its n) × (1 + tolerance).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from model_monitoring.tables.error_sums import ErrorSums, exact_units_sum, units_from_text, units_to_text

N_BINS = 10
_UNIT = 1 << ErrorSums.UNIT_BITS
_DRAWS = 4000
_SEED = 20080601  # Stephenson et al. 2008; any fixed seed makes the test replayable

BinSums = tuple[int, int, int, int, int]  # n, Σp, Σp², Σy, Σpy (sums in units of 2**-1074)


def bin_of(p: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Bin k holds [k/n, (k+1)/n); the last also holds 1 (probabilities outside [0, 1] are clipped)."""
    return np.clip(np.floor(np.asarray(p, dtype=np.float64) * n_bins), 0, n_bins - 1).astype(np.int64)


@dataclass(frozen=True)
class ReliabilityBins:
    """Immutable, mergeable: `merge` is exactly associative and commutative."""

    sums: Mapping[int, BinSums] = field(default_factory=dict)  # non-empty bins only
    n_bins: int = N_BINS

    @property
    def n(self) -> int:
        return sum(s[0] for s in self.sums.values())

    def update_many(self, predictions: Sequence[float] | np.ndarray,
                    outcomes: Sequence[float] | np.ndarray) -> ReliabilityBins:
        p = np.asarray(predictions, dtype=np.float64).reshape(-1)
        y = np.asarray(outcomes, dtype=np.float64).reshape(-1)
        if p.shape != y.shape:
            raise ValueError(f"{p.size} predictions but {y.size} outcomes")
        codes = bin_of(p, self.n_bins)
        added: dict[int, BinSums] = {}
        for k in np.unique(codes):
            mask = codes == k
            pk, yk = p[mask], y[mask]
            added[int(k)] = (int(mask.sum()), exact_units_sum(pk), exact_units_sum(pk * pk),
                             exact_units_sum(yk), exact_units_sum(pk * yk))
        return self.merge(ReliabilityBins(added, self.n_bins))

    def merge(self, other: ReliabilityBins) -> ReliabilityBins:
        if self.n_bins != other.n_bins:
            raise ValueError(f"cannot merge {self.n_bins} reliability bins with {other.n_bins}")
        out = dict(self.sums)
        for k, theirs in other.sums.items():
            ours = out.get(k)
            out[k] = theirs if ours is None else tuple(a + b for a, b in zip(ours, theirs, strict=True))  # type: ignore[assignment]
        return ReliabilityBins(out, self.n_bins)

    # ------------------------------------------------------------------ figures
    def ece(self) -> float | None:
        """Σ nₖ|p̄ₖ − ȳₖ| / N = Σ|Σp − Σy| / N; None when empty."""
        n = self.n
        if n == 0:
            return None
        return float(Fraction(sum(abs(s[1] - s[3]) for s in self.sums.values()), n * _UNIT))

    def decomposition(self) -> dict[str, float] | None:
        """Brier and its five terms (module docstring), each exact then rounded once."""
        n_total = self.n
        if n_total == 0:
            return None
        u = Fraction(1, _UNIT)
        rel = res = wbv = wbc = Fraction(0)
        sy_total = sum(s[3] for s in self.sums.values()) * u
        y_bar = sy_total / n_total
        brier = Fraction(0)
        for n, sp_u, spp_u, sy_u, spy_u in self.sums.values():
            sp, spp, sy, spy = sp_u * u, spp_u * u, sy_u * u, spy_u * u
            rel += (sp - sy) ** 2 / n
            res += n * (sy / n - y_bar) ** 2
            wbv += spp - sp * sp / n
            wbc += 2 * (spy - sp * sy / n)
            brier += spp - 2 * spy + sy
        return {"brier": float(brier / n_total), "reliability": float(rel / n_total),
                "resolution": float(res / n_total), "uncertainty": float(y_bar * (1 - y_bar)),
                "withinBinVariance": float(wbv / n_total), "withinBinCovariance": float(wbc / n_total)}

    def null_ece(self) -> np.ndarray:
        """Draws of the ECE these bins would show under perfect calibration (fixed seed)."""
        n_total = self.n
        if n_total == 0:
            return np.zeros(0)
        # one column of draws per bin index, empty bins included, so the draws do not depend on
        # which bins are filled or in what order partials were merged
        variances = np.array([self._variance(k) for k in range(self.n_bins)])
        draws = np.random.default_rng(_SEED).standard_normal((_DRAWS, variances.size))
        return np.asarray(np.abs(draws * np.sqrt(variances)).sum(axis=1) / n_total)

    def null_mean(self) -> float | None:
        """E[ECE | perfect calibration] at these bins and n: Σ√(2Vₖ/π)/N."""
        n_total = self.n
        if n_total == 0:
            return None
        total = sum(np.sqrt(2.0 * self._variance(k) / np.pi) for k in range(self.n_bins))
        return float(total / n_total)

    def _variance(self, k: int) -> float:
        """Σp(1−p) of bin k: the variance of its outcome count under perfect calibration."""
        s = self.sums.get(k)
        return max(float(Fraction(s[1] - s[2], _UNIT)), 0.0) if s else 0.0

    def bins_report(self) -> list[dict[str, object]]:
        """`[{bin, count, meanPrediction, observedRate}]`, every bin, empty ones with nulls."""
        out: list[dict[str, object]] = []
        for k in range(self.n_bins):
            s = self.sums.get(k)
            label = f"[{k / self.n_bins:.1f}, {(k + 1) / self.n_bins:.1f}{']' if k == self.n_bins - 1 else ')'}"
            n = s[0] if s else 0
            out.append({"bin": label, "count": n,
                        "meanPrediction": float(Fraction(s[1], n * _UNIT)) if s and n else None,
                        "observedRate": float(Fraction(s[3], n * _UNIT)) if s and n else None})
        return out

    # ------------------------------------------------------------------ codec
    def to_json(self) -> dict[str, object]:
        return {"k": self.n_bins, "b": {str(k): [s[0], *map(units_to_text, s[1:])]
                                        for k, s in sorted(self.sums.items())}}

    @classmethod
    def from_json(cls, doc: object) -> ReliabilityBins:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("b"), Mapping):
            raise ValueError(f"reliability bins must be {{k, b}}, got {doc!r}")
        sums: dict[int, BinSums] = {}
        for k, v in doc["b"].items():
            if not (isinstance(v, list) and len(v) == 5 and isinstance(v[0], int)):
                raise ValueError(f"reliability bin {k!r} must be [n, Σp, Σp², Σy, Σpy]")
            sums[int(k)] = (v[0], *(units_from_text(x) for x in v[1:]))  # type: ignore[assignment]
        return cls(sums, int(doc.get("k", N_BINS)))


@dataclass(frozen=True)
class EceVerdict:
    value: float | None
    baseline: float | None
    threshold: float | None
    clear_threshold: float | None
    status: str
    sample_size: int
    p_value: float | None
    null_mean: float | None


def ece_test(current: ReliabilityBins, baseline_ece: float | None, baseline_null_mean: float | None,
             *, tolerance: float, confidence: float, min_outcomes: int) -> EceVerdict | None:
    """`metric: "ece"` (module docstring): degraded when ECE > c·(1+tol) + q_confidence(null ECE),
    with c = max(0, baseline ECE − its null mean); p-value = P(null ECE ≥ ECE − c·(1+tol))."""
    if baseline_ece is None:
        return None
    value, n = current.ece(), current.n
    excess = max(0.0, baseline_ece - (baseline_null_mean or 0.0))
    if value is None or n < min_outcomes:
        return EceVerdict(value, baseline_ece, None, None, "insufficient_data", n, None, current.null_mean())
    null = current.null_ece()
    allowed = excess * (1.0 + tolerance)
    threshold = allowed + float(np.quantile(null, confidence))
    p_value = float((1 + np.count_nonzero(null >= value - allowed)) / (null.size + 1))
    null_mean = current.null_mean()
    # hysteresis: an incident clears below half the tolerance over the model's own excess plus
    # the null's 90th percentile (a calibrated model clears nine runs in ten on its own)
    clear = excess * (1.0 + tolerance / 2.0) + float(np.quantile(null, 0.9))
    status = "degraded" if value > threshold else "ok"
    return EceVerdict(value, baseline_ece, threshold, clear, status, n, p_value, null_mean)
