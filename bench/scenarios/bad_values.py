"""Wrong values for the bad-input scenario, drawn from hypothesis strategies with a fixed seed
(so a run is reproducible), and JSON text for any drawn value."""

from __future__ import annotations

import json
import string
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from bench.scenarios.common import ScenarioFailed


def dumps(doc: Any) -> bytes:
    """JSON text of a drawn value; integers beyond 64 bits (orjson refuses them) as text too."""
    try:
        return orjson.dumps(doc)
    except TypeError:
        return json.dumps(doc).encode()


def draw(strategy: st.SearchStrategy[Any], n: int, at: int) -> list[Any]:
    """`n` examples of a strategy, the same for the same seed (a derandomized @given run that
    only collects; padded by repetition when the strategy offers fewer distinct examples)."""
    out: list[Any] = []

    @seed(at)
    @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example: Any) -> None:
        out.append(example)

    collect()
    if not out:
        raise ScenarioFailed("hypothesis drew no example")
    return [out[i % len(out)] for i in range(n)]


LETTERS = st.text(alphabet=string.ascii_letters + " _-", max_size=12)
NOT_NUMBER = st.one_of(LETTERS, st.booleans(), st.none(), st.lists(st.integers(), max_size=3),
                       st.dictionaries(LETTERS, st.integers(), max_size=2))
NOT_ID = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                   st.none(), st.lists(LETTERS, max_size=2), st.just(""),
                   st.text(alphabet="ab", min_size=257, max_size=300))
NOT_TIMESTAMP = st.one_of(
    LETTERS, st.booleans(), st.none(), st.integers(max_value=-1),
    st.integers(min_value=253_402_300_800_000), st.lists(st.integers(), max_size=2),
    st.floats(min_value=1.0, max_value=1e12).filter(lambda f: not f.is_integer()),
    st.sampled_from(["2026-11-20T10:00:00", "2026-13-45T10:00:00Z", "2026-02-30T10:00:00Z",
                     "20261120", "2026-11-20T25:61:00Z"]))
NOT_FEATURES = st.one_of(
    st.lists(st.integers(), max_size=3), LETTERS, st.integers(), st.none(), st.booleans(),
    st.dictionaries(st.text(alphabet="abc", min_size=1, max_size=5),
                    st.one_of(st.lists(st.integers(), max_size=2), st.dictionaries(LETTERS, st.integers(), max_size=2)),
                    min_size=1, max_size=3),
    st.just({"": 1.0}), st.just({"long": "x" * 1025}))
WRONG = {"predictionId": NOT_ID, "tenantId": NOT_ID, "modelId": NOT_ID, "modelVersion": NOT_ID,
         "timestamp": NOT_TIMESTAMP, "prediction": NOT_NUMBER, "outcome": NOT_NUMBER,
         "features": NOT_FEATURES, "segment": st.one_of(st.integers(), st.booleans(), st.lists(LETTERS, max_size=2))}


def wrong_types(fields: tuple[str, ...]) -> st.SearchStrategy[tuple[str, Any]]:
    return st.one_of(*(st.tuples(st.just(f), WRONG[f]) for f in fields))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | LETTERS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(LETTERS, inner, max_size=4),
    max_leaves=12).filter(lambda v: not (isinstance(v, dict) and "records" in v))
