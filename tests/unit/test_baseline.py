"""Building a baseline from a reference sample, and the CONTRACT baseline object in and out."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import orjson
import pytest

from model_monitoring.tables.baseline import Baseline, BaselineError
from model_monitoring.tables.baseline_build import SparseBins, build_baseline, sparse_bins
from model_monitoring.tables.binning import FeatureBins

CONTRACT_EXAMPLE: dict[str, Any] = {
    "tenantId": None, "modelId": "risk-scoring", "modelVersion": "3", "task": "classification",
    "sampleSize": 20000,
    "features": {
        "amount": {"kind": "numeric", "edges": [10.0, 25.5, 40.0], "proportions": [0.2, 0.3, 0.3, 0.2], "missing": 0.0},
        "industry": {"kind": "categorical", "categories": ["retail", "tech"], "proportions": [0.6, 0.35], "other": 0.05, "missing": 0.0},
    },
    "performance": {"brier": 0.12, "mae": 0.25},
}


def reference(n: int = 1_000, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        p = float(rng.random())
        records.append({
            "predictionId": f"p-{i}",
            "prediction": p,
            "outcome": int(rng.random() < p) if i % 2 == 0 else None,
            "features": {
                "amount": float(rng.lognormal(3, 1)),
                "count": int(rng.poisson(3)),
                "industry": str(rng.choice(["retail", "tech", "finance"])),
                "flag": bool(rng.random() < 0.3),
                "sparse": None if i % 10 else 1.5,
                **({"optional": "x"} if i % 4 == 0 else {}),
            },
        })
    return records


def test_contract_example_parses_and_writes_back_the_same_object() -> None:
    baseline = Baseline.from_dict(CONTRACT_EXAMPLE)
    assert baseline.to_dict() == CONTRACT_EXAMPLE
    assert baseline.key() == "*:risk-scoring:3"
    assert Baseline.from_dict({**CONTRACT_EXAMPLE, "tenantId": "t-1"}).key() == "t-1:risk-scoring:3"
    amount = baseline.features["amount"]
    assert amount.expected_shares().tolist() == [0.2, 0.3, 0.3, 0.2, 0.0]
    assert baseline.features["industry"].expected_shares().tolist() == [0.6, 0.35, 0.05, 0.0]
    assert len(amount.expected_shares()) == amount.bins.n_bins == len(amount.bins.labels())


def test_build_infers_kinds_and_counts_shares_with_the_stream_binning() -> None:
    records = reference()
    baseline = build_baseline(records, model_id="m", model_version="1", tenant_id="t", task="classification")
    kinds = {name: f.bins.kind for name, f in baseline.features.items()}
    assert kinds == {"amount": "numeric", "count": "numeric", "flag": "categorical", "industry": "categorical",
                     "optional": "categorical", "sparse": "numeric"}
    assert baseline.features["flag"].bins.categories == ("false", "true")
    assert baseline.sample_size == 1_000
    for name, feature in baseline.features.items():
        counts, _ = feature.bins.bin_values([r["features"].get(name) for r in records])
        assert feature.expected_shares().tolist() == (counts / 1_000).tolist()
        assert math.fsum(feature.expected_shares()) == pytest.approx(1.0, abs=1e-12)
        value_shares = feature.proportions
        if feature.bins.kind == "numeric":
            assert all(s > 0 for s in value_shares)  # never an empty value bin
    assert baseline.features["optional"].missing == 0.75
    assert baseline.features["sparse"].bins.edges == () and baseline.features["sparse"].missing == 0.9


def test_build_computes_brier_and_mae_from_the_outcomes_it_has() -> None:
    records = reference()
    labelled = [r for r in records if r["outcome"] is not None]
    p = np.array([r["prediction"] for r in labelled])
    y = np.array([r["outcome"] for r in labelled], dtype=float)
    baseline = build_baseline(records, model_id="m", model_version="1", tenant_id=None, task="classification")
    assert baseline.brier == pytest.approx(float(np.mean((p - y) ** 2)), abs=1e-12)
    assert baseline.mae == pytest.approx(float(np.mean(np.abs(p - y))), abs=1e-12)
    regression = build_baseline(records, model_id="m", model_version="1", tenant_id=None, task="regression")
    assert regression.brier is None and regression.mae == baseline.mae
    unlabelled = [{**r, "outcome": None} for r in records]
    none = build_baseline(unlabelled, model_id="m", model_version="1", tenant_id=None, task="classification")
    assert (none.brier, none.mae) == (None, None)
    joined = build_baseline(unlabelled, model_id="m", model_version="1", tenant_id=None, task="classification",
                            outcomes={r["predictionId"]: r["outcome"] for r in labelled})
    assert (joined.brier, joined.mae) == (baseline.brier, baseline.mae)


def test_build_caps_categories_and_folds_the_rest_into_other() -> None:
    records = [{"prediction": 0.5, "features": {"c": f"v{i % 10}"}} for i in range(100)]
    baseline = build_baseline(records, model_id="m", model_version="1", tenant_id=None, task="regression", max_categories=3)
    feature = baseline.features["c"]
    assert len(feature.bins.categories) == 3 and feature.other == pytest.approx(0.7)


def test_a_many_valued_category_with_few_reference_events_per_value_is_named_with_the_size_it_needs() -> None:
    """200 Zipf-shaped values in 5,000 records: most values hold 3-9 events, which the drift bound
    counts as uncertain. Under the default cap of 50 categories every listed value is dense; with
    the cap lifted, the feature is named with the reference size that makes its rarest value dense
    (10 events) and the cap that keeps only dense values. A numeric feature's deciles are dense."""
    rng = np.random.default_rng(12)
    weights = 1.0 / np.arange(1, 201) ** 1.1
    codes = rng.choice(200, size=5_000, p=weights / weights.sum())
    records = [{"prediction": 0.5, "features": {"industry": f"v{c:03d}", "amount": float(c)}} for c in codes]
    capped = build_baseline(records, model_id="m", model_version="1", tenant_id=None, task="regression")
    assert sparse_bins(capped) == ()
    many = build_baseline(records, model_id="m", model_version="1", tenant_id=None, task="regression",
                          max_categories=200)
    counts = np.bincount(codes, minlength=200)
    seen = counts[counts > 0]
    (found,) = sparse_bins(many)
    assert found == SparseBins("industry", int(np.count_nonzero(seen < 10)), seen.size,
                               math.ceil(10 * 5_000 / seen.min()), int(np.count_nonzero(seen >= 10)))
    assert found.sparse > 100 and found.needed >= 10_000
    print(found.warning(5_000))
    assert f"Use a reference of >= {found.needed} records or --max-categories {found.dense_categories}." in found.warning(5_000)


def test_mixed_and_all_missing_features_are_categorical() -> None:
    records = [{"prediction": 0.5, "features": {"mixed": v, "empty": None}} for v in (1, "a", 2.5, None)]
    baseline = build_baseline(records, model_id="m", model_version="1", tenant_id=None, task="regression")
    assert baseline.features["mixed"].bins.categories == ("a",)
    assert baseline.features["mixed"].missing == 0.75  # numbers in a categorical feature: missing
    empty = baseline.features["empty"]
    assert (empty.bins.kind, empty.bins.categories, empty.missing) == ("categorical", (), 1.0)


def test_build_refuses_an_empty_sample_and_off_domain_outcomes() -> None:
    with pytest.raises(ValueError):
        build_baseline([], model_id="m", model_version="1", tenant_id=None, task="classification")
    with pytest.raises(ValueError):
        build_baseline([{"prediction": 0.5, "outcome": 2, "features": {}}], model_id="m", model_version="1",
                       tenant_id=None, task="classification")


def test_fingerprint_is_stable_and_changes_with_the_bins_only() -> None:
    a = Baseline.from_dict(CONTRACT_EXAMPLE)
    b = Baseline.from_dict(orjson.loads(orjson.dumps(CONTRACT_EXAMPLE)))
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 16
    other_shares = copy.deepcopy(CONTRACT_EXAMPLE)
    other_shares["features"]["amount"]["proportions"] = [0.1, 0.4, 0.3, 0.2]
    other_shares["performance"] = {"brier": None, "mae": None}
    assert Baseline.from_dict(other_shares).fingerprint() == a.fingerprint()
    other_edges = copy.deepcopy(CONTRACT_EXAMPLE)
    other_edges["features"]["amount"]["edges"] = [10.0, 25.5, 40.5]
    assert Baseline.from_dict(other_edges).fingerprint() != a.fingerprint()


def _with(path: tuple[str, ...], value: object) -> dict[str, Any]:
    document = copy.deepcopy(CONTRACT_EXAMPLE)
    target: Any = document
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return document


_DELETE = object()


@pytest.mark.parametrize(
    "path,value,field",
    [
        (("features", "amount", "proportions"), [0.2, 0.3, 0.3, 0.3], "features.amount"),  # sums to 1.1
        (("features", "amount", "proportions"), [0.2, 0.3, 0.3, 0.2 + 2e-6], "features.amount"),
        (("features", "amount", "edges"), [10.0, 40.0, 25.5], "features.amount.edges"),
        (("features", "amount", "edges"), [10.0, 10.0, 40.0], "features.amount.edges"),
        (("features", "amount", "edges"), [10.0, 25.5], "features.amount.proportions"),
        (("features", "amount", "edges"), [10.0, "25.5", 40.0], "features.amount.edges.1"),
        (("features", "amount", "other"), 0.1, "features.amount.other"),
        (("features", "amount", "missing"), _DELETE, "features.amount.missing"),
        (("features", "amount", "kind"), "ordinal", "features.amount.kind"),
        (("features", "industry", "categories"), ["retail", "retail"], "features.industry.categories"),
        (("features", "industry", "proportions"), [0.6, 0.3, 0.05], "features.industry.proportions"),
        (("features", "industry", "other"), -0.05, "features.industry"),
        (("features", "industry"), "categorical", "features.industry"),
        (("task",), "ranking", "task"),
        (("sampleSize",), 0, "sampleSize"),
        (("sampleSize",), 1.5, "sampleSize"),
        (("modelId",), _DELETE, "modelId"),
        (("modelVersion",), 3, "modelVersion"),
        (("tenantId",), "", "tenantId"),
        (("performance", "brier"), -0.1, "performance.brier"),
        (("performance", "mae"), "0.25", "performance.mae"),
        (("features",), [], "features"),
    ],
)
def test_off_contract_baselines_are_refused_naming_the_field(path: tuple[str, ...], value: object, field: str) -> None:
    with pytest.raises(BaselineError) as caught:
        Baseline.from_dict(_with(path, value))
    assert ".".join(caught.value.path) == field
    assert str(caught.value).startswith(field + ": ")


def test_a_shares_sum_within_1e6_is_accepted() -> None:
    Baseline.from_dict(_with(("features", "amount", "proportions"), [0.2, 0.3, 0.3, 0.2 + 5e-7]))
    with pytest.raises(BaselineError):
        Baseline.from_dict([])  # type: ignore[arg-type]


def test_bins_name_must_match_the_feature_key() -> None:
    baseline = Baseline.from_dict(CONTRACT_EXAMPLE)
    feature = baseline.features["amount"]
    assert feature.bins == FeatureBins("amount", "numeric", edges=(10.0, 25.5, 40.0))
    with pytest.raises(BaselineError):
        Baseline(None, "m", "1", "classification", 10, {"other": feature}, None, None)
