"""A baseline built from a reference sample of inference records (`model-monitoring baseline
build`, the demo, the tests), and the warning on a baseline whose bins hold too few reference
records for the drift bound to be sharp."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np

from model_monitoring.tables.baseline import Baseline, FeatureBaseline
from model_monitoring.tables.binning import FeatureBins, category_list, category_strings, numeric_array, numeric_edges
from model_monitoring.tables.calibration import ReliabilityBins
from model_monitoring.tables.error_sums import PerformanceSums
from model_monitoring.tables.psi_bound import DENSE_COUNT


def build_baseline(
    records: Sequence[Mapping[str, object]],
    *,
    model_id: str,
    model_version: str,
    tenant_id: str | None,
    task: str,
    n_bins: int = 10,
    max_categories: int = 50,
    outcomes: Mapping[str, float] | None = None,
) -> Baseline:
    """The baseline of a reference sample of inference records (CONTRACT ``ml.inference.features``).

    A feature whose present values are all numbers (not booleans) is numeric, otherwise categorical
    (so is a feature with no present value: it has only ``other`` and ``missing``). Shares are
    counted with the same ``bin_values`` the stream uses. Brier/MAE come from the records that carry
    an ``outcome`` or whose ``predictionId`` is in ``outcomes``; None without any.
    """
    if not records:
        raise ValueError("the reference sample has no records")
    feature_dicts = [cast(Mapping[str, object], r.get("features") or {}) for r in records]
    names = sorted({name for features in feature_dicts for name in features})
    features: dict[str, FeatureBaseline] = {}
    for name in names:
        values = [f.get(name) for f in feature_dicts]
        bins = _infer_bins(name, values, n_bins, max_categories)
        counts, _ = bins.bin_values(values)
        shares = [int(c) / len(records) for c in counts]
        extra = 1 if bins.kind == "numeric" else 2
        features[name] = FeatureBaseline(
            bins=bins,
            proportions=tuple(shares[:-extra]),
            other=shares[-2] if bins.kind == "categorical" else 0.0,
            missing=shares[-1],
        )
    performance, calibration = _reference_performance(records, outcomes or {}, task)
    brier = performance.squared.mean() if task == "classification" else None
    scores = [r.get("prediction") for r in records]
    prediction_bins = _infer_bins("prediction", scores, n_bins, max_categories)
    prediction = None
    if prediction_bins.kind == "numeric":
        counts, _ = prediction_bins.bin_values(scores)
        shares = [int(c) / len(records) for c in counts]
        prediction = FeatureBaseline(bins=prediction_bins, proportions=tuple(shares[:-1]), other=0.0,
                                     missing=shares[-1])
    classification = task == "classification" and calibration.n > 0
    return Baseline(
        tenant_id=tenant_id,
        model_id=model_id,
        model_version=model_version,
        task=cast(Literal["classification", "regression"], task),
        sample_size=len(records),
        features=features,
        brier=brier,
        mae=performance.absolute.mean(),
        prediction=prediction,
        ece=calibration.ece() if classification else None,
        ece_null_mean=calibration.null_mean() if classification else None,
        calibration=tuple(calibration.bins_report()) if classification else (),
    )


@dataclass(frozen=True)
class SparseBins:
    """A feature whose baseline has value bins with fewer than DENSE_COUNT reference events.

    The drift bound (tables/psi_bound.py) counts such a bin as uncertain on the baseline side:
    with many of them a drift has to be larger, or its current sample bigger, to be flagged. 200
    Zipf-shaped categories from N = 5,000 records (most with 3-9 events) reach 94.6% power on a
    true PSI of 0.25 at M = 1,000, where 50 categories reach 99% (bench/psi_bound_table.py).
    """

    feature: str
    sparse: int  # value bins (numeric bins, listed categories) with 0 < N·share < DENSE_COUNT
    bins: int  # value bins with a share > 0
    needed: int  # reference size at which the rarest value bin would hold DENSE_COUNT events
    dense_categories: int | None  # categorical: the categories with >= DENSE_COUNT events

    def warning(self, sample_size: int) -> str:
        cap = (f" or --max-categories {self.dense_categories}"
               if self.dense_categories is not None else "")
        return (f"feature {self.feature!r}: {self.sparse} of its {self.bins} bins hold fewer than "
                f"{DENSE_COUNT} of the {sample_size} reference records; the drift bound counts them as "
                f"uncertain, so only a larger drift or a larger current sample is flagged. Use a "
                f"reference of >= {self.needed} records{cap}.")


def sparse_bins(baseline: Baseline) -> tuple[SparseBins, ...]:
    """The features of ``baseline`` with value bins of fewer than DENSE_COUNT reference events
    (``other`` and ``missing`` are not counted: they are what the values are not), by name."""
    n = baseline.sample_size
    found = []
    for name, feature in sorted(baseline.features.items()):
        counts = np.rint(np.asarray(feature.proportions, dtype=np.float64) * n)
        present = counts[counts > 0]
        sparse = int(np.count_nonzero(present < DENSE_COUNT))
        if sparse == 0:
            continue
        needed = math.ceil(DENSE_COUNT * n / float(present.min()))
        dense = int(np.count_nonzero(counts >= DENSE_COUNT)) if feature.bins.kind == "categorical" else None
        found.append(SparseBins(name, sparse, int(present.size), needed, dense))
    return tuple(found)


def _infer_bins(name: str, values: list[object], n_bins: int, max_categories: int) -> FeatureBins:
    numbers, mismatch = numeric_array(values)
    present = numbers[~np.isnan(numbers)]
    if mismatch == 0 and present.size > 0:
        return FeatureBins(name, "numeric", edges=numeric_edges(present, n_bins))
    strings, _, _ = category_strings(values)
    return FeatureBins(name, "categorical", categories=category_list(strings, max_categories))


def _reference_performance(
    records: Sequence[Mapping[str, object]], outcomes: Mapping[str, float], task: str
) -> tuple[PerformanceSums, ReliabilityBins]:
    predictions: list[float] = []
    observed: list[float] = []
    for record in records:
        outcome = record.get("outcome")
        if outcome is None:
            outcome = outcomes.get(cast(str, record.get("predictionId")))
        if outcome is None:
            continue
        prediction = record.get("prediction")
        if isinstance(prediction, bool) or not isinstance(prediction, (int, float)):
            raise ValueError(f"record {record.get('predictionId')!r}: prediction must be a number")
        if task == "classification" and (outcome not in (0, 1) or not 0.0 <= prediction <= 1.0):
            raise ValueError(
                f"record {record.get('predictionId')!r}: classification needs p in [0, 1] and y in {{0, 1}}"
            )
        predictions.append(float(prediction))
        observed.append(float(cast(float, outcome)))
    calibration = ReliabilityBins()
    if task == "classification":
        calibration = calibration.update_many(predictions, observed)
    return PerformanceSums.empty().update_many(predictions, observed), calibration
