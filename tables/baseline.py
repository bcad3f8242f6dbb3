"""The baseline of one model version (CONTRACT ``ml.model.baselines``): frozen bins, expected shares,
baseline Brier/MAE; parsed and validated from the message, and built from a reference sample."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal, cast

import numpy as np
import orjson

from model_monitoring.schemas.validation import SHARES_TOLERANCE
from model_monitoring.tables.binning import FeatureBins, category_list, category_strings, numeric_array, numeric_edges
from model_monitoring.tables.calibration import ReliabilityBins
from model_monitoring.tables.error_sums import PerformanceSums
from model_monitoring.tables.psi_bound import DENSE_COUNT

TASKS = ("classification", "regression")


class BaselineError(ValueError):
    """A baseline that does not match the contract; ``path`` names the offending field."""

    def __init__(self, message: str, path: Sequence[str] = ()) -> None:
        self.message = message
        self.path = tuple(path)
        super().__init__(f"{'.'.join(self.path)}: {message}" if self.path else message)


@dataclass(frozen=True)
class FeatureBaseline:
    """Bins of one feature and the baseline's share of each bin."""

    bins: FeatureBins
    proportions: tuple[float, ...]  # numeric: one per value bin; categorical: one per category
    other: float
    missing: float

    def __post_init__(self) -> None:
        where = ("features", self.bins.name)
        expected = len(self.bins.edges) + 1 if self.bins.kind == "numeric" else len(self.bins.categories)
        if len(self.proportions) != expected:
            message = f"{expected} proportions expected, got {len(self.proportions)}"
            raise BaselineError(message, (*where, "proportions"))
        shares = (*self.proportions, self.other, self.missing)
        if not all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in shares):
            raise BaselineError("shares must be numbers in [0, 1]", where)
        if self.bins.kind == "numeric" and self.other != 0.0:
            raise BaselineError("a numeric feature has no 'other' share", (*where, "other"))
        if abs(math.fsum(shares) - 1.0) > SHARES_TOLERANCE:
            raise BaselineError(f"proportions, other and missing sum to {math.fsum(shares)!r}, not 1", where)

    def expected_shares(self) -> np.ndarray:
        """Expected share of every bin, in the order of ``bins.labels()``."""
        extra = (self.missing,) if self.bins.kind == "numeric" else (self.other, self.missing)
        return np.asarray((*self.proportions, *extra), dtype=np.float64)

    def to_dict(self) -> dict[str, object]:
        if self.bins.kind == "numeric":
            return {"kind": "numeric", "edges": list(self.bins.edges),
                    "proportions": list(self.proportions), "missing": self.missing}
        return {"kind": "categorical", "categories": list(self.bins.categories),
                "proportions": list(self.proportions), "other": self.other, "missing": self.missing}


@dataclass(frozen=True)
class Baseline:
    """The CONTRACT baseline object of one model version (``tenant_id`` None means every tenant)."""

    tenant_id: str | None
    model_id: str
    model_version: str
    task: Literal["classification", "regression"]
    sample_size: int
    features: Mapping[str, FeatureBaseline]
    brier: float | None
    mae: float | None
    # added with the outcome clock, all optional: the prediction score's bins (a numeric
    # feature named "prediction"), and the reference sample's calibration
    prediction: FeatureBaseline | None = None
    ece: float | None = None
    ece_null_mean: float | None = None  # E[ECE] under perfect calibration at the sample's bins and n
    calibration: tuple[Mapping[str, object], ...] = ()  # [{bin, count, meanPrediction, observedRate}]
    _fingerprint: str = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise BaselineError(f"must be one of {list(TASKS)}, got {self.task!r}", ("task",))
        if isinstance(self.sample_size, bool) or not isinstance(self.sample_size, int) or self.sample_size < 1:
            raise BaselineError("must be an integer >= 1", ("sampleSize",))
        for metric, value in (("brier", self.brier), ("mae", self.mae)):
            if value is not None and not (math.isfinite(value) and value >= 0.0):
                raise BaselineError(f"must be a number >= 0 or null, got {value!r}", ("performance", metric))
        for name, feature in self.features.items():
            if feature.bins.name != name:
                raise BaselineError(f"bins are named {feature.bins.name!r}", ("features", name))
        bins: list[object] = [[n, f.bins.kind, list(f.bins.edges), list(f.bins.categories)]
                              for n, f in sorted(self.features.items())]
        if self.prediction is not None:  # absent, the fingerprint is what it was before
            bins.append(["\u0000prediction", list(self.prediction.bins.edges)])
        digest = hashlib.sha256(orjson.dumps(bins)).hexdigest()[:16]
        object.__setattr__(self, "_fingerprint", digest)

    def fingerprint(self) -> str:
        """A short stable hash of every feature's bins: state counted with other bins is detectable."""
        return self._fingerprint

    def key(self) -> str:
        """The ``ml.model.baselines`` key: ``{tenantId or *}:{modelId}:{modelVersion}``."""
        return f"{self.tenant_id or '*'}:{self.model_id}:{self.model_version}"

    def to_dict(self) -> dict[str, object]:
        """Exactly the CONTRACT shape."""
        return {
            "tenantId": self.tenant_id,
            "modelId": self.model_id,
            "modelVersion": self.model_version,
            "task": self.task,
            "sampleSize": self.sample_size,
            "features": {name: feature.to_dict() for name, feature in self.features.items()},
            "performance": {"brier": self.brier, "mae": self.mae, **self._calibration_dict()},
            **({"prediction": self.prediction.to_dict()} if self.prediction is not None else {}),
        }

    def _calibration_dict(self) -> dict[str, object]:
        if self.ece is None:
            return {}
        return {"ece": self.ece, "eceNullMean": self.ece_null_mean,
                "calibration": [dict(b) for b in self.calibration]}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Baseline:
        """Parse and validate a baseline message; BaselineError on anything off-contract."""
        if not isinstance(d, Mapping):
            raise BaselineError(f"a baseline must be a JSON object, got {type(d).__name__}")
        tenant = d.get("tenantId")
        if tenant is not None and not (isinstance(tenant, str) and tenant):
            raise BaselineError("must be a non-empty string or null", ("tenantId",))
        features = d.get("features")
        if not isinstance(features, Mapping):
            raise BaselineError("must be an object", ("features",))
        performance = d.get("performance", {})
        if not isinstance(performance, Mapping):
            raise BaselineError("must be an object", ("performance",))
        return cls(
            tenant_id=tenant,
            model_id=_text(d, "modelId", ()),
            model_version=_text(d, "modelVersion", ()),
            task=cast(Literal["classification", "regression"], _text(d, "task", ())),
            sample_size=cast(int, d.get("sampleSize")),
            features={str(name): _feature_from_dict(str(name), f) for name, f in features.items()},
            brier=_optional_number(performance.get("brier"), ("performance", "brier")),
            mae=_optional_number(performance.get("mae"), ("performance", "mae")),
            prediction=_prediction_from_dict(d.get("prediction")),
            ece=_optional_number(performance.get("ece"), ("performance", "ece")),
            ece_null_mean=_optional_number(performance.get("eceNullMean"), ("performance", "eceNullMean")),
            calibration=_calibration_from(performance.get("calibration")),
        )


def _prediction_from_dict(d: object) -> FeatureBaseline | None:
    if d is None:
        return None
    if not isinstance(d, Mapping) or d.get("kind") != "numeric":
        raise BaselineError("must be a numeric feature object", ("prediction",))
    return _feature_from_dict("prediction", d, ("prediction",))


def _calibration_from(value: object) -> tuple[Mapping[str, object], ...]:
    if value is None:
        return ()
    if not (isinstance(value, list) and all(isinstance(b, Mapping) for b in value)):
        raise BaselineError("must be a list of bin objects", ("performance", "calibration"))
    return tuple(dict(b) for b in value)


def _feature_from_dict(name: str, d: object, where: tuple[str, ...] | None = None) -> FeatureBaseline:
    where = where or ("features", name)
    if not isinstance(d, Mapping):
        raise BaselineError("must be an object", where)
    kind = d.get("kind")
    if kind == "numeric":
        edges = _numbers(d.get("edges"), (*where, "edges"))
        if any(b <= a for a, b in pairwise(edges)):
            raise BaselineError("must be strictly increasing", (*where, "edges"))
        bins = FeatureBins(name, "numeric", edges=edges)
        other = 0.0 if d.get("other") is None else _number(d.get("other"), (*where, "other"))
    elif kind == "categorical":
        categories = d.get("categories")
        if not (isinstance(categories, list) and all(isinstance(c, str) for c in categories)):
            raise BaselineError("must be a list of strings", (*where, "categories"))
        if len(set(categories)) != len(categories):
            raise BaselineError("must not repeat a category", (*where, "categories"))
        bins = FeatureBins(name, "categorical", categories=tuple(categories))
        other = _number(d.get("other"), (*where, "other"))
    else:
        raise BaselineError(f"must be 'numeric' or 'categorical', got {kind!r}", (*where, "kind"))
    return FeatureBaseline(
        bins=bins,
        proportions=_numbers(d.get("proportions"), (*where, "proportions")),
        other=other,
        missing=_number(d.get("missing"), (*where, "missing")),
    )


def _text(d: Mapping[str, object], key: str, where: tuple[str, ...]) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise BaselineError(f"must be a non-empty string, got {value!r}", (*where, key))
    return value


def _number(value: object, where: tuple[str, ...]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BaselineError(f"must be a finite number, got {value!r}", where)
    return float(value)


def _optional_number(value: object, where: tuple[str, ...]) -> float | None:
    return None if value is None else _number(value, where)


def _numbers(value: object, where: tuple[str, ...]) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise BaselineError(f"must be a list of numbers, got {value!r}", where)
    return tuple(_number(v, (*where, str(i))) for i, v in enumerate(value))


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
