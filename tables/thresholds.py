"""Alerting thresholds for drift and performance, with per-model and per-feature PSI overrides."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from scipy.special import ndtri

_OVERRIDE_KEYS = frozenset({"psi_warning", "psi_critical"})


@functools.lru_cache(maxsize=64)
def z_quantile(confidence: float) -> float:
    """The standard normal quantile at `confidence` (`scipy.stats.norm.ppf` is `ndtri`): the
    one-sided critical value of the tests and bounds at that confidence."""
    return float(ndtri(confidence))


@dataclass(frozen=True)
class Thresholds:
    """The decision settings of one evaluation; built once from the service settings.

    ``overrides`` is keyed ``"model"`` or ``"model:feature"`` and maps to ``psi_warning`` and/or
    ``psi_critical``; the most specific key wins, field by field.
    """

    psi_warning: float = 0.1
    psi_critical: float = 0.25
    min_samples: int = 100
    min_outcomes: int = 100
    tolerance: float = 0.10
    confidence: float = 0.95
    overrides: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # Benjamini–Hochberg level over one run's drift checks (and, apart, performance checks) of
    # one model version; 0 turns false-discovery control off
    fdr_q: float = 0.05
    # the outcome clock (tables/evaluation.py, tables/label_health.py)
    performance_window: str = "outcome"  # or "prediction"
    label_coverage_share: float = 0.5
    label_coverage_age_days: int = 14

    def __post_init__(self) -> None:
        _check_psi_pair(self.psi_warning, self.psi_critical, "defaults")
        if self.min_samples < 1 or self.min_outcomes < 2:
            raise ValueError("min_samples must be >= 1 and min_outcomes >= 2")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0.0):
            raise ValueError(f"tolerance must be a finite number >= 0, got {self.tolerance!r}")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence!r}")
        if self.performance_window not in ("outcome", "prediction"):
            raise ValueError(f"performance_window must be outcome or prediction, got {self.performance_window!r}")
        if not 0.0 < self.label_coverage_share < 1.0 or not 1 <= self.label_coverage_age_days <= 21:
            raise ValueError("label_coverage_share must be in (0, 1) and label_coverage_age_days in [1, 21]")
        if not 0.0 <= self.fdr_q < 1.0:
            raise ValueError(f"fdr_q must be in [0, 1) (0 turns it off), got {self.fdr_q!r}")
        for key, values in self.overrides.items():
            unknown = set(values) - _OVERRIDE_KEYS
            if unknown:
                raise ValueError(f"override {key!r}: unknown keys {sorted(unknown)}")
            for name, value in values.items():
                if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                    raise ValueError(f"override {key!r}: {name} must be a positive number")

    def psi_thresholds(self, model: str, feature: str) -> tuple[float, float]:
        """(warning, critical) for one feature of one model: feature override, then model, then default."""
        warning, critical = self.psi_warning, self.psi_critical
        for key in (model, f"{model}:{feature}"):
            values = self.overrides.get(key, {})
            warning = float(values.get("psi_warning", warning))
            critical = float(values.get("psi_critical", critical))
        _check_psi_pair(warning, critical, f"{model}:{feature}")
        return warning, critical


def _check_psi_pair(warning: float, critical: float, where: str) -> None:
    if not (math.isfinite(warning) and math.isfinite(critical) and 0.0 < warning <= critical):
        raise ValueError(f"{where}: need 0 < psi_warning <= psi_critical, got {warning!r}, {critical!r}")
