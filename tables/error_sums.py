"""Mergeable error sums (n, Σe, Σe²) for Brier and MAE, kept exactly.

Every finite double is an integer multiple of 2**-1074, so the sums are kept as Python integers in
that unit: adding is exact, ``merge`` is exactly associative and commutative, and the mean read
from partials merged in any order, by any partitioning, equals the one-pass mean to the last bit
(design invariant 1). Floats are only made when a value is read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

_UNIT_BITS = 1074  # 2**-1074 is the smallest subnormal double: every finite double is k * 2**-1074
_EXACT_TEXT = re.compile(r"-?0x[0-9a-f]+p-?[0-9]+")


def exact_units(value: float) -> int:
    """``value`` as an integer count of 2**-1074 (exact)."""
    if not math.isfinite(value):
        raise ValueError(f"error values must be finite, got {value!r}")
    numerator, denominator = float(value).as_integer_ratio()
    return numerator << (_UNIT_BITS + 1 - denominator.bit_length())


def exact_units_sum(values: np.ndarray) -> int:
    """Σ values as an integer count of 2**-1074, exact, vectorised for a batch."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return 0
    if not np.all(np.isfinite(values)):
        raise ValueError("error values must be finite")
    fractions, exponents = np.frexp(values)  # value = fraction * 2**exponent, 0.5 <= |fraction| < 1
    mantissas = (fractions * 2.0**53).astype(np.int64)  # exact: 53-bit integers
    shifts = exponents.astype(np.int64) + (_UNIT_BITS - 53)
    # Subnormals give negative shifts; their mantissas end in enough zero bits to shift right exactly.
    low = shifts < 0
    mantissas[low] >>= -shifts[low]
    shifts[low] = 0
    # Sum the mantissas of each distinct shift in int64 without overflow: split them in 27-bit halves.
    order = np.argsort(shifts, kind="stable")
    shifts, mantissas = shifts[order], mantissas[order]
    starts = np.flatnonzero(np.r_[True, shifts[1:] != shifts[:-1]])
    high_sums = np.add.reduceat(mantissas >> 27, starts)
    low_sums = np.add.reduceat(mantissas & ((1 << 27) - 1), starts)
    return sum(
        ((int(high) << 27) + int(low_)) << int(shift)
        for high, low_, shift in zip(high_sums, low_sums, shifts[starts], strict=True)
    )


def units_to_text(units: int) -> str:
    """An exact, compact text form ``0x<hex>p<exp>`` (= hex * 2**exp, as ``float.hex`` reads it)."""
    if units == 0:
        return "0x0p0"
    sign = "-" if units < 0 else ""
    magnitude = abs(units)
    trailing = (magnitude & -magnitude).bit_length() - 1
    return f"{sign}0x{magnitude >> trailing:x}p{trailing - _UNIT_BITS}"


def units_from_text(text: object) -> int:
    """Inverse of :func:`units_to_text`; raises ValueError on anything else."""
    if text == "0x0p0":  # the empty sums of every partial without outcomes
        return 0
    if not isinstance(text, str) or not _EXACT_TEXT.fullmatch(text):
        raise ValueError(f"not an exact sum: {text!r}")
    sign = -1 if text.startswith("-") else 1
    mantissa, exponent = text.lstrip("-")[2:].split("p")
    shift = int(exponent) + _UNIT_BITS
    if shift < 0:
        raise ValueError(f"exact sum below 2**-1074: {text!r}")
    return sign * (int(mantissa, 16) << shift)


@dataclass(frozen=True, init=False)
class ErrorSums:
    """Count, Σe and Σe² of a per-sample error e; an immutable, mergeable table value.

    Construct it empty, or from float totals (taken exactly); ``total`` and ``total_sq`` read the
    exact sums rounded once to the nearest float.
    """

    n: int
    total_units: int = field(repr=False)  # Σe in units of 2**-1074
    total_sq_units: int = field(repr=False)  # Σe² in units of 2**-1074

    UNIT_BITS: ClassVar[int] = _UNIT_BITS

    def __init__(self, n: int = 0, total: float = 0.0, total_sq: float = 0.0) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        object.__setattr__(self, "n", int(n))
        object.__setattr__(self, "total_units", exact_units(total))
        object.__setattr__(self, "total_sq_units", exact_units(total_sq))

    @classmethod
    def from_units(cls, n: int, total_units: int, total_sq_units: int) -> ErrorSums:
        """An ErrorSums from exact sums (counts of 2**-1074)."""
        if n < 0 or total_sq_units < 0:
            raise ValueError("n and Σe² must be >= 0")
        sums = object.__new__(cls)  # not cls(n): its exact_units(0.0) calls cost on hot paths
        object.__setattr__(sums, "n", int(n))
        object.__setattr__(sums, "total_units", int(total_units))
        object.__setattr__(sums, "total_sq_units", int(total_sq_units))
        return sums

    @property
    def total(self) -> float:
        return self.total_units / (1 << _UNIT_BITS)  # int / int is correctly rounded in CPython

    @property
    def total_sq(self) -> float:
        return self.total_sq_units / (1 << _UNIT_BITS)

    def __repr__(self) -> str:
        return f"ErrorSums(n={self.n}, total={self.total!r}, total_sq={self.total_sq!r})"

    def update(self, e: float) -> ErrorSums:
        """These sums plus one error e."""
        e = float(e)
        return ErrorSums.from_units(
            self.n + 1, self.total_units + exact_units(e), self.total_sq_units + exact_units(e * e)
        )

    def update_many(self, es: np.ndarray | Sequence[float]) -> ErrorSums:
        """These sums plus a batch of errors; equal to folding :meth:`update` over them."""
        errors = np.asarray(es, dtype=np.float64).reshape(-1)
        return ErrorSums.from_units(
            self.n + errors.size,
            self.total_units + exact_units_sum(errors),
            self.total_sq_units + exact_units_sum(errors * errors),
        )

    def merge(self, other: ErrorSums) -> ErrorSums:
        """The sums of both; exactly associative and commutative."""
        return ErrorSums.from_units(
            self.n + other.n,
            self.total_units + other.total_units,
            self.total_sq_units + other.total_sq_units,
        )

    def mean(self) -> float | None:
        """Σe / n, correctly rounded; None when empty."""
        if self.n == 0:
            return None
        return self.total_units / (self.n << _UNIT_BITS)

    def std_error(self) -> float | None:
        """Standard error of the mean, sample sd / √n, from Σe and Σe²; None below two samples.

        The variance numerator n·Σe² − (Σe)² is computed exactly from the stored sums (Σe² is the
        exact sum of each e² rounded to a double), so it never cancels into noise or below zero.
        """
        n = self.n
        if n < 2:
            return None
        numerator = (n * self.total_sq_units << _UNIT_BITS) - self.total_units**2
        variance_of_mean = max(numerator, 0) / ((n * n * (n - 1)) << (2 * _UNIT_BITS))
        return math.sqrt(variance_of_mean)

    def to_json(self) -> list[object]:
        """``[n, Σe, Σe²]`` with the sums in exact text form (orjson ints stop at 64 bits)."""
        return [self.n, units_to_text(self.total_units), units_to_text(self.total_sq_units)]

    @classmethod
    def from_json(cls, value: object) -> ErrorSums:
        if not (isinstance(value, list) and len(value) == 3):
            raise ValueError(f"ErrorSums must be [n, total, total_sq], got {value!r}")
        n, total, total_sq = value
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"ErrorSums n must be an int >= 0, got {n!r}")
        return cls.from_units(n, units_from_text(total), units_from_text(total_sq))


@dataclass(frozen=True)
class PerformanceSums:
    """Error sums of one (model version, segment) for squared error (Brier) and absolute error (MAE)."""

    squared: ErrorSums = field(default_factory=ErrorSums)
    absolute: ErrorSums = field(default_factory=ErrorSums)

    @staticmethod
    def empty() -> PerformanceSums:
        return PerformanceSums()

    @property
    def n(self) -> int:
        return self.squared.n

    def update_many(
        self, predictions: np.ndarray | Sequence[float], outcomes: np.ndarray | Sequence[float]
    ) -> PerformanceSums:
        """These sums plus a batch of (prediction, outcome) pairs: e = (p − y)² and |p − y|."""
        p = np.asarray(predictions, dtype=np.float64).reshape(-1)
        y = np.asarray(outcomes, dtype=np.float64).reshape(-1)
        if p.shape != y.shape:
            raise ValueError(f"{p.size} predictions but {y.size} outcomes")
        difference = p - y
        return PerformanceSums(
            self.squared.update_many(difference * difference),
            self.absolute.update_many(np.abs(difference)),
        )

    def merge(self, other: PerformanceSums) -> PerformanceSums:
        return PerformanceSums(self.squared.merge(other.squared), self.absolute.merge(other.absolute))

    def to_json(self) -> dict[str, object]:
        return {"squared": self.squared.to_json(), "absolute": self.absolute.to_json()}

    @classmethod
    def from_json(cls, value: object) -> PerformanceSums:
        if not (isinstance(value, dict) and set(value) == {"squared", "absolute"}):
            raise ValueError(f"PerformanceSums must be {{squared, absolute}}, got {value!r}")
        return cls(ErrorSums.from_json(value["squared"]), ErrorSums.from_json(value["absolute"]))
