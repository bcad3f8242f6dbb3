"""The baseline of one model version (CONTRACT ``ml.model.baselines``): frozen bins, expected shares,
baseline Brier/MAE; parsed and validated from the message (built from a reference sample in
tables/baseline_build.py)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal, cast

import numpy as np
import orjson

from model_monitoring.schemas.validation import SHARES_TOLERANCE
from model_monitoring.tables.binning import FeatureBins

TASKS = ("classification", "regression")


# (tenant, model, version) -> the version's baseline, if one was registered
BaselineLookup = Callable[[str, str, str], "Baseline | None"]


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
