"""A one-sided confidence bound of the true PSI, and the p-value of "true PSI <= threshold".

The true PSI is the PSI between the population the current window comes from and the population
the baseline was drawn from, through the same frozen bins, shares clipped at ε as in the reported
value. The plug-in PSI of M current and N baseline events overestimates it by about
(B−1)(1/M + 1/N): with 50 categories and M = 100 that is ≈ 0.5 with no drift at all, and the χ²
approximation behind the old sample-size gate fails on the sparse bins that cause it. So:

    estimate = PSI − bias,    psiLower = max(0, estimate − z·se),    z = Φ⁻¹(confidence),
    pValue = 1 − Φ((estimate − threshold) / se),

and psiLower >= threshold exactly when pValue <= 1 − confidence (the test the bound inverts).
Bias and variance are summed bin by bin, each bin by the best description of its term
t(x, e) = (x − e)·ln(x/e) that its counts allow:

- A dense bin (>= DENSE_COUNT events; on the current side also any bin of a value the baseline
  never saw): the second-order (delta-method) bias at the observed shares,
  (1 − â)(1 + e/â)/(2M) for the current side and (1 − e)(1 + â/e)/(2N) for the baseline's, and
  the second-order variance 2·bias².
- A sparse current bin with a baseline share: the exact mean and variance of t(K/M, e) for
  K ~ Binomial(M, e), the bin without drift, summed over K. These are the empty and one-event
  bins of many-valued categories that inflate the plug-in PSI; a moment of them at the observed
  share would be zero for an empty bin, which is what made the old rule flag them.
- A sparse baseline bin: the exact bootstrap bias of t(a, L/N) for L ~ Binomial(N, e), which is
  a·(ln e − E ln x) − (E x − e)·ln a + (E x ln x − e ln e) with x = max(L/N, ε); the three
  brackets depend on the baseline alone and are cached.
- A bin the baseline never saw (share 0: `other` or `missing`, or a category of a new value):
  its true baseline share is not 0 but below ≈ 3/N, so the estimate counts its term against
  max(ε, 1/N) instead of ε (`UNSEEN_BASELINE_COUNT`). That takes a little from a real new
  category (10% of traffic unseen in N = 5,000: 0.62 instead of 0.69) and keeps the rare values
  a baseline happened to miss from adding a PSI they do not have.
- Variance: the delta-method variance of the PSI in the current shares, (Σ â·g² − (Σ â·g)²)/M
  with g = ∂PSI/∂a, and likewise in the baseline shares over N, which carries the spread under
  a real drift; plus the second-order variances above, which carry it where the gradient
  vanishes (no drift), combined as (√current + √baseline)² (= 2(B−1)(1/M + 1/N)² for dense
  bins with no drift). The delta-method variance taken at noisy shares runs high by twice the
  second-order variance of the dense bins; that is subtracted.

Why this: it is deterministic (the same counts give the same verdict, also after a crash) and a
fixed number of numpy operations per check, with exact sums (40 terms) only for sparse bins,
and vectorised over rows of counts that share a baseline (25,000 decile checks in one call take
well under a second). A noncentral χ² bound describes M·PSI only for small, spread-out changes
on dense bins and needs a root search per check; a bootstrap is random and slow. Calibration is
measured, not assumed: tests/unit/test_psi_bound.py and bench/psi_bound_table.py simulate the
rate of `psiLower >= 0.1` with no drift, at a true PSI of exactly 0.1, and under the issue's
drifts, for numeric features and categorical features of 2–200 values.

Where it stops: a feature with many sparse bins. 200 Zipf-shaped categories, all listed, from a
baseline of N = 5,000 (most of them with 3–9 reference events) are flagged in only 92–95% of
draws at a true PSI of 0.25 and M = 1,000, against 99% for 5–50 categories. The bound is not
what holds them back: at a true PSI of exactly 0.1 the rule already flags 3.5–8% of them
(M = 100–5,000), and the best fixed cut-off on the estimate that flags 5% there reaches ≈ 95%
at 0.25. The estimate's own spread is the limit (sd ≈ 0.053 under that drift; the sparse
bins' second-order noise alone is ≈ √(2(B−1))·(1/M + 1/N) ≈ 0.024), and a different bias or
variance formula moves the cut-off, not the spread. With N = 20,000 the same feature reaches
≈ 97% (best cut-off ≈ 98.8%, size at 0.1 of 2.3–5.7%), with M = 2,000 over 99%. So
`baseline build` names the features whose value bins hold fewer than DENSE_COUNT reference
events, with the reference size and the category cap (default 50) that make every bin dense
(tables/baseline.py ``sparse_bins``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from model_monitoring.tables.thresholds import z_quantile

DENSE_COUNT = 10  # a bin with this many events is described by its second-order expansion
# a value the baseline never saw had a share of at most ≈ 3/N there (95%); the bound takes 1/N,
# twice the Jeffreys posterior mean 0.5/N
UNSEEN_BASELINE_COUNT = 1.0
# K ~ Binomial(M, e) with M·e < DENSE_COUNT stays below 40 with probability 1 − 1e-12
_COUNTS = np.arange(40, dtype=np.float64)
with np.errstate(divide="ignore"):
    _LOG_COUNTS = np.log(_COUNTS)  # ln 0 = −inf: K = 0 is clipped at ε
# pmf(k) = pmf(k − 1)·(n − k + 1)/k·p/(1 − p) for k >= 1, and (n − k + 1)/k = n·(1/k) − (k − 1)/k
_INVERSE = np.r_[0.0, 1.0 / _COUNTS[1:]]
_PREVIOUS_OVER = np.r_[0.0, _COUNTS[:-1] / _COUNTS[1:]]


@dataclass(frozen=True)
class PsiBound:
    """Per row of counts: the plug-in PSI, the bias-corrected estimate and its standard error."""

    value: np.ndarray
    estimate: np.ndarray
    std_error: np.ndarray

    def lower(self, confidence: float) -> np.ndarray:
        """The one-sided lower confidence bound of the true PSI at ``confidence`` (>= 0)."""
        return np.asarray(np.maximum(self.estimate - z_quantile(confidence) * self.std_error, 0.0))

    def gate(self, threshold: float, confidence: float) -> np.ndarray:
        """The plug-in PSI at which the lower bound reaches ``threshold``, bias and spread as they
        are: threshold + (value − estimate) + z·se. The value is at or over it exactly when the
        bound is at or over the threshold."""
        return np.asarray(threshold + self.value - self.estimate + z_quantile(confidence) * self.std_error)

    def p_value(self, threshold: float) -> np.ndarray:
        """P-value of H0: true PSI <= ``threshold`` (the one-sided test that the bound inverts)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (self.estimate - threshold) / self.std_error
        exact = np.where(self.estimate >= threshold, 0.0, 1.0)  # se = 0: the PSI is known exactly
        return np.asarray(np.where(self.std_error > 0, ndtr(-z), exact), dtype=np.float64)


@dataclass(frozen=True)
class _Baseline:
    """What the bound needs of the baseline alone; computed once per baseline feature."""

    shares: np.ndarray  # e
    clipped: np.ndarray  # max(e, ε)
    dense: np.ndarray  # N·e >= DENSE_COUNT (0/1)
    sparse: np.ndarray  # 0 < N·e < DENSE_COUNT (bool)
    # the bootstrap bias of a sparse bin is a·log_gap − mean_gap·ln a + entropy_gap
    log_gap: np.ndarray
    mean_gap: np.ndarray
    entropy_gap: np.ndarray
    null_second: float  # Σ 2(1 − e)²/N² over sparse bins: their no-drift second-order variance
    unseen: np.ndarray  # e = 0 (bool)
    unseen_share: float  # the share the bound gives a bin the baseline never saw: max(ε, c/N)


@functools.lru_cache(maxsize=4096)
def _baseline(shares: bytes, n: float, epsilon: float) -> _Baseline:
    e = np.frombuffer(shares, dtype=np.float64)
    present = e > 0
    dense = present & (n * e >= DENSE_COUNT)
    sparse = present & ~dense
    pmf, x, log_x = _binomial(e[sparse], np.full(int(sparse.sum()), n), epsilon)
    e_s = np.maximum(e[sparse], epsilon)
    return _Baseline(
        shares=e, clipped=np.maximum(e, epsilon),
        dense=dense.astype(np.float64), sparse=sparse,
        log_gap=np.log(e_s) - (pmf * log_x).sum(axis=1),
        mean_gap=(pmf * x).sum(axis=1) - e_s,
        entropy_gap=(pmf * x * log_x).sum(axis=1) - e_s * np.log(e_s),
        null_second=float((2 * (1 - e[sparse]) ** 2 / n**2).sum()),
        unseen=e == 0, unseen_share=max(epsilon, UNSEEN_BASELINE_COUNT / n),
    )


def psi_bound(expected: np.ndarray, counts: np.ndarray, baseline_n: int, *, epsilon: float) -> PsiBound:
    """The bound's ingredients for each row of ``counts`` (shape (B,) or (R, B), every row
    with at least one event) against baseline shares ``expected`` (B,) of ``baseline_n`` events;
    shares are clipped at ``epsilon`` as in the PSI itself. Rows are independent checks."""
    expected = np.ascontiguousarray(expected, dtype=np.float64)
    c = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    if c.shape[1:] != expected.shape:
        raise ValueError(f"{expected.size} expected shares but counts of shape {c.shape}")
    if baseline_n < 1:
        raise ValueError("the bound needs a baseline count >= 1")
    m = c.sum(axis=1)
    if (m <= 0).any():
        raise ValueError("PSI bound of an empty sample")
    n = float(baseline_n)
    base = _baseline(expected.tobytes(), n, epsilon)
    e, e_c = base.shares, base.clipped
    a = c / m[:, None]
    a_c = np.maximum(a, epsilon)
    log_ratio = np.log(a_c / e_c)
    e_over_a, a_over_e = e_c / a_c, a_c / e_c
    value = ((a_c - e_c) * log_ratio).sum(axis=1)

    # current side: second order at the observed share where the bin is dense or holds values
    # the baseline never saw (its second-order variance is 2·bias²); exact no-drift moments where
    # it is sparse
    dense = (c >= DENSE_COUNT) | ((c > 0) & (e == 0))
    bias_bins = (1 - a) * (1 + e_over_a) / (2 * m[:, None]) * dense
    second = 2 * (bias_bins**2).sum(axis=1)
    bias = bias_bins.sum(axis=1)
    noise = 2 * second
    sparse = ~dense & (e > 0)
    if sparse.any():
        null_mean, null_var = _no_drift_moments(e, m, sparse, epsilon)
        bias += null_mean
        second += null_var

    # baseline side: second order where the baseline bin is dense, else the bootstrap bias
    bias_b_bins = (1 - e) * (1 + a_over_e) / (2 * n) * base.dense
    second_b = 2 * (bias_b_bins**2).sum(axis=1)
    noise += 2 * second_b
    bias_b = bias_b_bins.sum(axis=1)
    if base.sparse.any():
        a_s = a_c[:, base.sparse]
        bias_b += (a_s * base.log_gap - base.mean_gap * np.log(a_s) + base.entropy_gap).sum(axis=1)
        second_b += base.null_second

    g = log_ratio + 1 - e_over_a  # ∂PSI/∂a
    h = 1 - log_ratio - a_over_e  # ∂PSI/∂e
    ag, eh = a * g, e * h
    delta = ((ag * g).sum(axis=1) - ag.sum(axis=1) ** 2) / m + ((eh * h).sum(axis=1) - eh.sum(axis=1) ** 2) / n
    no_drift = (np.sqrt(second) + np.sqrt(second_b)) ** 2
    variance = no_drift + np.maximum(delta - noise, 0.0)
    estimate = value - bias - bias_b
    if base.unseen.any() and base.unseen_share > epsilon:
        # a value the baseline never saw may still have had a share of up to ≈ 1/N there: for the
        # bound its term counts against that share, not against ε (the reported value keeps ε)
        a_u, e_u = a_c[:, base.unseen], base.unseen_share
        estimate -= ((a_u - epsilon) * np.log(a_u / epsilon) - (a_u - e_u) * np.log(a_u / e_u)).sum(axis=1)
    return PsiBound(value=value, estimate=estimate, std_error=np.sqrt(variance))


def _binomial(p: np.ndarray, n: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For K ~ Binomial(n, p) (p and n 1-D, one pair per row, n·p < DENSE_COUNT): the pmf over
    K = 0..39, the clipped share x = max(K/n, epsilon) and ln x, each of shape (rows, 40)."""
    p_s = np.minimum(p, 1 - 1e-12)[:, None]
    n_s = n[:, None]
    steps = np.maximum(n_s * _INVERSE - _PREVIOUS_OVER, 0.0) * (p_s / (1 - p_s))  # 0 from k = n + 1 on
    steps[:, 0] = 1.0
    pmf = np.exp(n_s * np.log1p(-p_s)) * np.cumprod(steps, axis=1)
    log_x = np.maximum(_LOG_COUNTS - np.log(n_s), np.log(epsilon))
    return pmf, np.exp(log_x), log_x


def _no_drift_moments(e: np.ndarray, m: np.ndarray, where: np.ndarray, epsilon: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Σ over the bins in ``where`` (R, B) of the mean and of the variance of the bin's PSI term
    t(K/M) with K ~ Binomial(M, e), the bin with no drift: exact where M·e < DENSE_COUNT, second
    order elsewhere. Each (M, bin) pair is computed once, however many rows share it."""
    columns = where.any(axis=0)
    distinct, row_of = (m, np.zeros(1, dtype=np.intp)) if m.size == 1 else np.unique(m, return_inverse=True)
    share = e[columns][None, :]
    total = distinct[:, None]
    mu = total * share
    mean = (1 - share) / total + (1 - share) / (2 * mu * total)
    var = 2 * (1 - share) ** 2 / total**2
    small = mu < DENSE_COUNT
    if small.any():
        rows, cols = np.nonzero(small)
        at = share[0, cols]
        pmf, x, log_x = _binomial(at, distinct[rows], epsilon)
        reference = np.maximum(at, epsilon)[:, None]
        term = (x - reference) * (log_x - np.log(reference))
        first = (pmf * term).sum(axis=1)
        mean[rows, cols] = first
        var[rows, cols] = np.maximum((pmf * term * term).sum(axis=1) - first**2, 0.0)
    # summed over every bin, in place, zeros where a row's bin is not in `where`: a row's sums then
    # add the same terms at the same positions however many rows share the call (numpy's pairwise
    # summation groups terms by position, and the columns computed above depend on the batch)
    full_mean = np.zeros((distinct.size, e.size))
    full_var = np.zeros((distinct.size, e.size))
    full_mean[:, columns], full_var[:, columns] = mean, var
    return (np.where(where, full_mean[row_of], 0.0).sum(axis=1),
            np.where(where, full_var[row_of], 0.0).sum(axis=1))
