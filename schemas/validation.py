"""Decoding and validating messages against this package's JSON Schemas.

Every message the service reads goes `decode_json` -> (`split_envelope` for features) ->
`Validators.validate`; every failure is a `MessageRejected` whose `reason` is the DLQ `error`
header and whose `detail` names the failing path. Outputs are validated the same way before
they are published.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from importlib import resources
from typing import Any

import fastjsonschema
import orjson

from model_monitoring.schemas.rejection import INVALID_JSON, INVALID_UTF8, SCHEMA, TOO_LARGE, MessageRejected
from model_monitoring.schemas.timestamps import parse_timestamp_ms

DEFAULT_MAX_FEATURES = 2000

# Logical topic kind -> schema file (named after the default topic).
SCHEMA_FILES: dict[str, str] = {
    "features": "ml.inference.features.json",
    "outcomes": "ml.outcomes.json",
    "baselines": "ml.model.baselines.json",
    "trigger": "workflow.job.trigger.json",
    "drift": "ml.model.drift.detected.json",
    "degraded": "ml.model.performance.degraded.json",
    "resolved": "ml.model.drift.resolved.json",
    "recovered": "ml.model.performance.recovered.json",
    "snapshot": "ml.model.monitoring.snapshot.json",
    "completed": "workflow.job.completed.json",
    "failed": "workflow.job.failed.json",
}
TOPIC_KINDS = tuple(SCHEMA_FILES)
# Kinds whose `features` map takes the configured cap instead of the file's default.
_CAPPED_FEATURE_MAPS = ("features", "baselines")


# --- bytes -> object --------------------------------------------------------------------------


def decode_json(raw: bytes | bytearray | memoryview | None, max_bytes: int) -> object:
    """Parse one UTF-8 JSON payload of at most `max_bytes` bytes.

    orjson rejects NaN/Infinity literals and numbers that overflow a double, and nesting deeper
    than 1024 levels, so the result holds finite numbers only and each of those cases is
    `invalid_json`. A UTF-8 byte-order mark is `invalid_json` too (RFC 8259 forbids sending one).
    """
    if raw is None or len(raw) == 0:
        raise MessageRejected(INVALID_JSON, "empty payload")
    size = raw.nbytes if isinstance(raw, memoryview) else len(raw)
    if size > max_bytes:
        raise MessageRejected(TOO_LARGE, f"payload is {size} bytes, over the limit of {max_bytes}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # Only on the error path: tell undecodable bytes apart from malformed JSON.
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as bad:
            raise MessageRejected(INVALID_UTF8, f"byte {bad.start}: {bad.reason}") from None
        raise MessageRejected(INVALID_JSON, str(exc)) from None


def split_envelope(obj: object) -> list[object]:
    """The records of one features message: `[obj]`, or the list of an envelope `{"records": [...]}`.

    A dict with `records` and no `predictionId` is an envelope (a record may carry an extra field
    named `records`). Records are not validated here; the caller validates each on its own, so
    one bad record does not reject its neighbours.
    """
    if isinstance(obj, dict) and "records" in obj and "predictionId" not in obj:
        records = obj["records"]
        if not isinstance(records, list):
            raise MessageRejected(SCHEMA, "records: must be array")
        return records
    return [obj]


def _is_iso_zoned(text: str) -> bool:
    """fastjsonschema format `iso8601-zoned`: the pattern checks the shape, this the calendar and range."""
    try:
        parse_timestamp_ms(text)
    except MessageRejected:
        return False
    return True


_FORMATS: dict[str, Callable[[str], bool]] = {"iso8601-zoned": _is_iso_zoned}


# --- schemas ----------------------------------------------------------------------------------


def load_schema(topic_kind: str) -> dict[str, Any]:
    """A fresh copy of the JSON Schema of `topic_kind`, as shipped in this package."""
    try:
        name = SCHEMA_FILES[topic_kind]
    except KeyError:
        raise ValueError(f"unknown topic kind {topic_kind!r}; expected one of {', '.join(TOPIC_KINDS)}") from None
    schema: dict[str, Any] = json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))
    return schema


def compile_schema(schema: dict[str, Any]) -> Callable[[Any], Any]:
    """Compile one schema the way Validators does (with the `iso8601-zoned` format)."""
    return fastjsonschema.compile(schema, formats=_FORMATS)


class Validators:
    """Every topic's schema compiled once; `validate` is what producers and consumers call."""

    def __init__(self, max_features: int = DEFAULT_MAX_FEATURES) -> None:
        if isinstance(max_features, bool) or not isinstance(max_features, int) or max_features < 1:
            raise ValueError(f"max_features must be a positive int, not {max_features!r}")
        self.max_features = max_features
        self._compiled: dict[str, Callable[[Any], Any]] = {}
        for kind in TOPIC_KINDS:
            schema = load_schema(kind)
            if kind in _CAPPED_FEATURE_MAPS:
                schema["properties"]["features"]["maxProperties"] = max_features
            self._compiled[kind] = compile_schema(schema)

    def validate(self, topic_kind: str, obj: object) -> object:
        """Return `obj` if it is a valid `topic_kind` message, else raise MessageRejected("schema").

        Beyond the schema: every number must be finite (a NaN from our own arithmetic would be
        written as null by orjson), and a baseline's bins must be consistent.
        """
        try:
            compiled = self._compiled[topic_kind]
        except KeyError:
            raise ValueError(f"unknown topic kind {topic_kind!r}; expected one of {', '.join(TOPIC_KINDS)}") from None
        try:
            compiled(obj)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise MessageRejected(SCHEMA, _describe(exc)) from None
        bad_path = _first_non_finite(obj)
        if bad_path is not None:
            raise MessageRejected(SCHEMA, f"{bad_path}: must be a finite number")
        if topic_kind == "baselines":
            _check_baseline_bins(obj)  # type: ignore[arg-type]
        return obj


# --- checks the schema language cannot say ----------------------------------------------------

# How far a baseline's shares may sum from 1: an annotation in the baselines schema, so the
# contract file, this check and `Baseline.from_dict` share one number.
SHARES_TOLERANCE: float = float(load_schema("baselines")["x-sharesTolerance"])


def _check_baseline_bins(baseline: dict[str, Any]) -> None:
    for name, spec in baseline["features"].items():
        where = f"features.{name}"
        proportions = spec["proportions"]
        if spec["kind"] == "numeric":
            edges = spec["edges"]
            if any(a >= b for a, b in zip(edges, edges[1:], strict=False)):
                raise MessageRejected(SCHEMA, f"{where}.edges: must be strictly increasing")
            if len(proportions) != len(edges) + 1:
                raise MessageRejected(
                    SCHEMA, f"{where}.proportions: must have len(edges) + 1 = {len(edges) + 1} shares, not {len(proportions)}"
                )
            total = math.fsum(proportions) + spec["missing"]
        else:
            categories = spec["categories"]
            if len(set(categories)) != len(categories):
                raise MessageRejected(SCHEMA, f"{where}.categories: must be unique")
            if len(proportions) != len(categories):
                raise MessageRejected(
                    SCHEMA, f"{where}.proportions: must have one share per category ({len(categories)}), not {len(proportions)}"
                )
            total = math.fsum(proportions) + spec["other"] + spec["missing"]
        if abs(total - 1.0) > SHARES_TOLERANCE:
            raise MessageRejected(SCHEMA, f"{where}: proportions, other and missing must sum to 1, not {total:.6g}")


def _first_non_finite(obj: object) -> str | None:
    """Path of the first NaN or infinity in `obj`, or None. Iterative: depth is unbounded."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else "(root)"
    stack: list[tuple[str, object]] = [("", obj)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            items: Any = node.items()
            template = "{}.{}" if path else "{1}"
        elif isinstance(node, list):
            items = enumerate(node)
            template = "{}[{}]"
        else:
            continue
        for key, value in items:
            if isinstance(value, float):
                if not math.isfinite(value):
                    return template.format(path, key)
            elif isinstance(value, (dict, list)):
                stack.append((template.format(path, key), value))
    return None


def _describe(exc: fastjsonschema.JsonSchemaValueException) -> str:
    """'features.amount: must be number, string, boolean or null' from a fastjsonschema error."""
    name = exc.name or "data"
    path = name[4:].lstrip(".") if name.startswith("data") else name
    rule, definition = exc.rule, exc.rule_definition
    if rule == "required" and isinstance(exc.value, dict):
        missing = next((key for key in definition if key not in exc.value), "?")
        return f"{_join(path, missing)}: is required"
    if rule == "type":
        text = "must be " + _or_list(definition if isinstance(definition, list) else [definition])
    elif rule in ("enum", "const"):
        options = definition if rule == "enum" else [definition]
        text = "must be " + _or_list([json.dumps(option) for option in options])
    elif rule == "pattern":
        text = _PATTERN_TEXT.get(definition, f"must match {definition}")
    elif rule == "format":
        text = "must be a real ISO-8601 date-time with a zone, from 1970 to 9999"
    elif rule == "propertyNames":
        text = f"every key must be {definition.get('minLength', 0)} to {definition.get('maxLength', '∞')} characters"
    else:
        message = exc.message or ""
        text = message[len(name) :].strip() if message.startswith(name) else message
    return f"{path or '(root)'}: {text}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _or_list(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


_PATTERN_TEXT = {
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]{1,9})?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$": (
        "must be an ISO-8601 date-time with a zone, e.g. 2026-11-20T10:00:00Z"
    ),
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$": (
        "must be ISO-8601 UTC with milliseconds, e.g. 2026-11-20T10:00:00.000Z"
    ),
    r"^[A-Za-z0-9._:-]+$": "must contain only letters, digits and . _ : -",
}
