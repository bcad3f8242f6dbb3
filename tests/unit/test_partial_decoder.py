"""The typed decoder of stored partials (tables/partial.py `decode_partial`, `decode_part_rows`)
gives what the general path (orjson + `PartialState.from_json`) gives, on every document it
accepts, and declines the rest, which then go the general way with its own value or error."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from model_monitoring.tables.evaluation_state import load_part, store_part
from model_monitoring.tables.partial import PartialState, decode_part_rows, decode_partial
from tests.support.documents import paths
from tests.unit.test_codecs import PARTIALS, STATES

SETTINGS = settings(max_examples=300, deadline=None)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.sampled_from([2.0, -1.0, 0.5, 1e3])
    | st.sampled_from(["", "3", "-1", "0x0p0", "0x1p-3", "x", "f" * 16]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["0", "1", "k", "b", "n"]), inner,
                                                                max_size=3),
    max_leaves=6)


def mutated(doc: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    """`doc` with the member or item at `path` replaced by `value`, removed, or given a sibling."""
    *parents, last = path
    node = doc
    for p in parents:
        node = node[p]
    if how == "replace":
        node[last] = value
    elif how == "remove":
        del node[last]
    elif isinstance(node, dict):
        node["unknown"] = value
    else:
        node.append(value)
    return doc


def general(raw: bytes) -> PartialState | Exception:
    try:
        return PartialState.from_json(orjson.loads(raw))
    except Exception as e:  # noqa: BLE001 — the outcome compared, whatever it is
        return e


@SETTINGS
@given(PARTIALS)
def test_a_written_partial_is_decoded_by_the_typed_decoder_exactly(state: PartialState) -> None:
    raw = state.to_bytes()
    fast = decode_partial(raw)
    assert fast is not None  # the written form is never declined
    assert fast == state == general(raw)
    assert fast.to_bytes() == raw


# values one step outside the written form: null, a bool or a float for a count, a negative
# count, a number as text, an empty or wrong container, an exact-sum text for a count
# (integers beyond 64 bits: orjson reads them as floats, msgspec as integers)
NEAR_MISSES = (None, True, False, -1, 0, 2.0, 1.5, "3", "", "0x0p0", "0x1p-1080", [], [0], {}, {"1": 1},
               2**63, 2**64 + 1, -(2**63) - 1)


def check_same_as_general(doc: Any) -> None:
    raw = json.dumps(doc).encode()  # the standard library's: it writes integers of any size
    expected = general(raw)
    fast = decode_partial(raw)
    if fast is not None:  # accepted: only what the general path accepts, as the same value
        assert not isinstance(expected, Exception), (doc, expected)
        assert fast == expected, doc
        assert fast.to_bytes() == expected.to_bytes(), doc
    try:
        got: PartialState | Exception = PartialState.from_bytes(raw)
    except Exception as e:  # noqa: BLE001
        got = e
    if isinstance(expected, Exception):
        assert type(got) is type(expected) and str(got) == str(expected), doc
    else:
        assert got == expected, doc


@settings(max_examples=20, deadline=None)
@given(PARTIALS)
def test_every_near_miss_decodes_as_the_general_path_decodes_it(state: PartialState) -> None:
    """Every member and item of a written partial replaced by each near miss, removed, or given
    an unknown sibling: the typed decoder's value, or the general path's value or error."""
    doc = state.to_json()
    text = orjson.dumps(doc)
    for path in paths(doc):
        for how, values in (("replace", NEAR_MISSES), ("remove", (None,)), ("add", (1,))):
            for value in values:
                check_same_as_general(mutated(orjson.loads(text), path, how, value))


@SETTINGS
@given(PARTIALS, st.data(), st.sampled_from(["replace", "remove", "add"]), JSON)
def test_any_other_document_decodes_as_the_general_path_decodes_it(
        state: PartialState, data: st.DataObject, how: str, value: Any) -> None:
    doc = state.to_json()
    check_same_as_general(mutated(json.loads(json.dumps(doc)), data.draw(st.sampled_from(paths(doc))),
                                  how, value))


@SETTINGS
@given(STATES)
def test_a_stored_part_is_decoded_by_the_typed_decoder_exactly(states: dict[Any, PartialState]) -> None:
    stored = store_part(states)
    assert decode_part_rows(stored) is not None
    assert load_part(stored) == states == load_part(orjson.loads(stored))


def test_a_stored_part_outside_the_written_form_goes_the_general_way() -> None:
    state = PartialState()
    rows = [[1, "", state.to_json()]]  # a version written as a number: str() by the general path
    assert decode_part_rows(orjson.dumps(rows)) is None
    assert load_part(orjson.dumps(rows)) == {("1", ""): state}
