"""Message contracts: every schema, the decoder, the timestamp format and the typed models.

The CONTRACT.md examples are copied verbatim below; the outputs' "…" placeholders are filled
with concrete values before validation (the verbatim placeholders must be rejected).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fastjsonschema
import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import model_monitoring.schemas as schemas
from model_monitoring.schemas import rejection, validation
from model_monitoring.schemas.models import InferenceRecord, JobTrigger, OutcomeRecord
from model_monitoring.schemas.openapi import OPENAPI_FILE
from model_monitoring.schemas.rejection import MessageRejected
from model_monitoring.schemas.timestamps import MAX_TIMESTAMP_MS, format_timestamp, parse_timestamp_ms
from model_monitoring.schemas.validation import (
    SCHEMA_FILES,
    TOPIC_KINDS,
    Validators,
    decode_json,
    load_schema,
    split_envelope,
)
from tests.support.documents import paths as json_paths

# Copied verbatim from CONTRACT.md, in its order (test_examples_match_contract checks the copy).
CONTRACT_EXAMPLES: dict[str, str] = {
    "features": """\
{"predictionId": "p-1", "tenantId": "tenant-1", "modelId": "risk-scoring", "modelVersion": "3",
 "timestamp": "2026-11-20T10:00:00Z", "prediction": 0.73, "segment": "emea",
 "features": {"amount": 1200.5, "industry": "retail", "age_days": null}}
""",
    "outcomes": """\
{"predictionId": "p-1", "tenantId": "tenant-1", "modelId": "risk-scoring",
 "outcome": 1, "timestamp": "2026-12-02T09:00:00Z"}
""",
    "baselines": """\
{"tenantId": null, "modelId": "risk-scoring", "modelVersion": "3", "task": "classification",
 "sampleSize": 20000,
 "features": {
   "amount":   {"kind": "numeric", "edges": [10.0, 25.5, 40.0], "proportions": [0.2, 0.3, 0.3, 0.2], "missing": 0.0},
   "industry": {"kind": "categorical", "categories": ["retail", "tech"], "proportions": [0.6, 0.35], "other": 0.05, "missing": 0.0}},
 "performance": {"brier": 0.12, "mae": 0.25}}
""",
    "trigger": """\
{"job": "model-monitoring", "jobRunId": "optional-id",
 "metadata": {"tenantIds": ["tenant-1"], "windowEnd": "2026-11-29T06:00:00Z"},
 "triggeredAt": "2026-11-29T06:00:00Z"}
""",
    "drift": """\
{"eventId": "…", "jobRunId": "…", "tenantId": "tenant-1", "modelId": "risk-scoring",
 "modelVersion": "3", "segment": null, "feature": "amount", "metric": "psi",
 "value": 0.31, "threshold": 0.25, "delta": 0.06, "severity": "critical",
 "sampleSize": 5400, "baselineSampleSize": 20000,
 "windowStart": "…", "windowEnd": "…", "detectedAt": "…"}
""",
    "degraded": """\
{"eventId": "…", "jobRunId": "…", "tenantId": "tenant-1", "modelId": "risk-scoring",
 "modelVersion": "3", "segment": null, "metric": "brier", "value": 0.19, "baseline": 0.12,
 "threshold": 0.132, "delta": 0.058, "sampleSize": 812,
 "windowStart": "…", "windowEnd": "…", "detectedAt": "…"}
""",
    "snapshot": """\
{"jobRunId": "…", "tenantId": "tenant-1", "modelId": "risk-scoring", "modelVersion": "3",
 "segment": null, "windowStart": "…", "windowEnd": "…", "sampleSize": 5400,
 "features": {
   "amount": {"metric": "psi", "value": 0.31, "status": "drift", "severity": "critical",
              "gate": 0.0041, "sampleSize": 5400,
              "bins": [{"bin": "[-inf, 10.0)", "expected": 0.2, "actual": 0.05, "contribution": 0.21}]}},
 "performance": {
   "brier": {"value": 0.19, "baseline": 0.12, "threshold": 0.132, "status": "degraded", "sampleSize": 812},
   "mae":   {"value": 0.33, "baseline": 0.25, "threshold": 0.275, "status": "degraded", "sampleSize": 812}}}
""",
    "completed": """\
{"job": "model-monitoring", "jobRunId": "…", "tenants": ["tenant-1"], "driftChecked": 40,
 "performanceChecked": 4, "driftDetected": 3, "performanceDegraded": 1, "durationMs": 812,
 "completedAt": "…"}
""",
}

# CONTRACT.md gives no example of the resolution topics; these follow its prose ("Additions under
# way": eventId, incidentId, tenant, model, version, segment, feature or metric, the last value,
# clearThreshold, openedAt, resolvedAt and jobRunId) and what the service adds.
RESOLVED_EXAMPLE = {
    "eventId": "evt-1a2b", "incidentId": "inc-9f8e", "jobRunId": "run-2026-12-13", "tenantId": "tenant-1",
    "modelId": "risk-scoring", "modelVersion": "3", "segment": None, "feature": "amount", "metric": "psi",
    "psiLower": 0.0, "value": 0.02, "clearThreshold": 0.08, "resolution": "cleared", "quietRuns": 1,
    "sampleSize": 5400, "openedAt": "2026-11-29T06:00:01.000Z", "resolvedAt": "2026-12-13T06:00:01.000Z",
    "windowStart": "2026-12-06T06:00:00.000Z", "windowEnd": "2026-12-13T06:00:00.000Z",
}
RECOVERED_EXAMPLE = {
    **{k: v for k, v in RESOLVED_EXAMPLE.items() if k not in ("feature", "psiLower")},
    "metric": "brier", "value": 0.121, "baseline": 0.12, "clearThreshold": 0.126,
}
# the fields the incident issue adds to the drift and degraded events
INCIDENT_FIELDS = {"incidentId": "inc-9f8e", "incidentStatus": "opened", "openedAt": "2026-11-29T06:00:01.000Z"}

# CONTRACT.md gives no example of workflow.job.failed; this one follows its prose.
FAILED_EXAMPLE = {
    "job": "model-monitoring",
    "jobRunId": "run-2026-11-29",
    "error": "baselines topic unreachable",
    "failedAt": "2026-11-29T06:00:02.000Z",
}

# What the outputs' "…" placeholders stand for.
PLACEHOLDER_VALUES = {
    "eventId": "evt-0f3a",
    "jobRunId": "run-2026-11-29",
    "windowStart": "2026-11-22T06:00:00.000Z",
    "windowEnd": "2026-11-29T06:00:00.000Z",
    "detectedAt": "2026-11-29T06:00:01.000Z",
    "completedAt": "2026-11-29T06:00:02.000Z",
}

MAX_BYTES = 1_000_000
VALIDATORS = Validators()


def _fill_placeholders(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: PLACEHOLDER_VALUES[k] if v == "…" else _fill_placeholders(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill_placeholders(v) for v in node]
    assert node != "…", "a placeholder with no value in PLACEHOLDER_VALUES"
    return node


def example(kind: str) -> dict[str, Any]:
    """A fresh, valid message of `kind`: the contract example with its placeholders filled."""
    if kind == "failed":
        return copy.deepcopy(FAILED_EXAMPLE)
    if kind in ("resolved", "recovered"):
        return copy.deepcopy(RESOLVED_EXAMPLE if kind == "resolved" else RECOVERED_EXAMPLE)
    return _fill_placeholders(decode_json(CONTRACT_EXAMPLES[kind].encode(), MAX_BYTES))


def rejected(kind: str, obj: object, validators: Validators = VALIDATORS) -> MessageRejected:
    with pytest.raises(MessageRejected) as info:
        validators.validate(kind, obj)
    return info.value


def _dotted(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _with(obj: dict[str, Any], path: tuple[Any, ...], value: Any = None, *, delete: bool = False) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    parent = obj
    for part in path[:-1]:
        parent = parent[part]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


# --- the contract's examples ------------------------------------------------------------------


@pytest.mark.parametrize("kind", TOPIC_KINDS)
def test_contract_example_validates(kind: str) -> None:
    message = example(kind)
    assert VALIDATORS.validate(kind, message) is message


@pytest.mark.parametrize("kind", ["drift", "degraded", "snapshot", "completed"])
def test_verbatim_placeholders_are_rejected(kind: str) -> None:
    # The "…" of the contract stands for an id or a time; the schemas type those fields.
    verbatim = decode_json(CONTRACT_EXAMPLES[kind].encode(), MAX_BYTES)
    assert rejected(kind, verbatim).reason == "schema"


def _contract_path() -> Path | None:
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "docs" / "CONTRACT.md", here.parents[3] / "shared" / "CONTRACT.md"):
        if candidate.is_file():
            return candidate
    return None


def test_examples_match_contract() -> None:
    path = _contract_path()
    if path is None:
        pytest.skip("CONTRACT.md is not next to this checkout")
    blocks = re.findall(r"```json\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    assert blocks == list(CONTRACT_EXAMPLES.values())


# --- the schema files -------------------------------------------------------------------------

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
DESIGN_TOPICS = {
    "ml.inference.features", "ml.outcomes", "ml.model.baselines", "workflow.job.trigger",
    "ml.model.drift.detected", "ml.model.performance.degraded", "ml.model.monitoring.snapshot",
    "workflow.job.completed", "workflow.job.failed", "ml.model.drift.resolved", "ml.model.performance.recovered",
}
SIMPLE_TYPES = {"array", "boolean", "integer", "null", "number", "object", "string"}
SUBSCHEMA = {"additionalItems", "additionalProperties", "contains", "else", "if", "items", "not", "propertyNames", "then"}
SCHEMA_MAPS = {"definitions", "properties", "patternProperties"}
SCHEMA_LISTS = {"allOf", "anyOf", "oneOf"}
NON_NEGATIVE = {"maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties"}
NUMBERS = {"maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum", "multipleOf"}
OTHER_KEYWORDS = {
    "$schema", "$id", "$ref", "$comment", "title", "description", "default", "examples", "readOnly",
    "writeOnly", "type", "enum", "const", "pattern", "uniqueItems", "required", "dependencies", "format",
    "contentMediaType", "contentEncoding",
}
# Annotations of this project's own, which validators ignore: the baselines schema carries the
# shares tolerance that the validator and Baseline.from_dict both read.
EXTENSION_NUMBERS = {"x-sharesTolerance"}
DRAFT_07_KEYWORDS = SUBSCHEMA | SCHEMA_MAPS | SCHEMA_LISTS | NON_NEGATIVE | NUMBERS | OTHER_KEYWORDS | EXTENSION_NUMBERS


def _draft07_problems(node: Any, root: dict[str, Any], where: str = "#") -> list[str]:
    """Structural draft-07 check of one schema: keywords, their value types, local $refs."""
    if isinstance(node, bool):
        return []
    if not isinstance(node, dict):
        return [f"{where}: a schema must be an object or a boolean"]
    problems = [f"{where}: unknown keyword {key}" for key in node if key not in DRAFT_07_KEYWORDS]
    for key, value in node.items():
        at = f"{where}/{key}"
        if key in SUBSCHEMA:
            problems += _draft07_problems(value, root, at)
        elif key in SCHEMA_MAPS:
            problems += [p for name, sub in value.items() for p in _draft07_problems(sub, root, f"{at}/{name}")]
        elif key in SCHEMA_LISTS:
            problems += [p for i, sub in enumerate(value) for p in _draft07_problems(sub, root, f"{at}/{i}")]
        elif key in NON_NEGATIVE and not (type(value) is int and value >= 0):
            problems.append(f"{at}: must be a non-negative integer")
        elif key in NUMBERS | EXTENSION_NUMBERS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            problems.append(f"{at}: must be a number")
        elif key == "type":
            names = value if isinstance(value, list) else [value]
            if not names or not set(names) <= SIMPLE_TYPES or len(set(names)) != len(names):
                problems.append(f"{at}: bad type {value!r}")
        elif key == "required":
            if not all(isinstance(n, str) for n in value) or len(set(value)) != len(value):
                problems.append(f"{at}: must be unique strings")
            elif not set(value) <= set(node.get("properties", {})):
                problems.append(f"{at}: names a property the schema does not describe")
        elif key == "enum" and not (isinstance(value, list) and value):
            problems.append(f"{at}: must be a non-empty array")
        elif key == "pattern":
            re.compile(value)
        elif key == "$ref":
            target: Any = root
            for part in value.removeprefix("#/").split("/"):
                target = target.get(part) if isinstance(target, dict) else None
            if not value.startswith("#/") or target is None:
                problems.append(f"{at}: unresolved {value}")
    return problems


def test_one_schema_file_per_topic() -> None:
    package = Path(schemas.__file__).parent
    topic_files = {p.name for p in package.glob("*.json")} - {OPENAPI_FILE}  # that one is the HTTP routes'
    assert topic_files == {f"{topic}.json" for topic in DESIGN_TOPICS}
    assert set(SCHEMA_FILES.values()) == {f"{topic}.json" for topic in DESIGN_TOPICS}


@pytest.mark.parametrize("kind", TOPIC_KINDS)
def test_schema_file_is_draft07(kind: str) -> None:
    schema = load_schema(kind)
    assert schema["$schema"] == DRAFT_07
    assert schema["type"] == "object" and schema["additionalProperties"] is True
    assert _draft07_problems(schema, schema) == []
    # Plain fastjsonschema, without this package's format: what any other service would do.
    plain = fastjsonschema.compile(schema)
    plain(example(kind))


def test_draft07_checker_finds_problems() -> None:
    bad = {"type": "strng", "properties": {"a": {"minLength": -1, "$ref": "#/definitions/x"}}, "requird": ["a"]}
    assert len(_draft07_problems(bad, bad)) == 4


def test_schemas_are_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = fastjsonschema.compile
    monkeypatch.setattr(validation.fastjsonschema, "compile", lambda *a, **k: calls.append(1) or real(*a, **k))
    validators = Validators()
    assert len(calls) == len(TOPIC_KINDS)
    monkeypatch.setattr(validation.fastjsonschema, "compile", lambda *a, **k: pytest.fail("compiled again"))
    for _ in range(3):
        for kind in TOPIC_KINDS:
            validators.validate(kind, example(kind))


def test_unknown_topic_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown topic kind"):
        VALIDATORS.validate("ml.outcomes", example("outcomes"))
    with pytest.raises(ValueError):
        Validators(max_features=0)


# --- required and typed fields ----------------------------------------------------------------

REQUIRED: dict[str, list[tuple[Any, ...]]] = {
    "features": [("predictionId",), ("tenantId",), ("modelId",), ("modelVersion",), ("timestamp",),
                 ("prediction",), ("features",)],
    "outcomes": [("predictionId",), ("tenantId",), ("modelId",), ("outcome",), ("timestamp",)],
    "baselines": [("tenantId",), ("modelId",), ("modelVersion",), ("task",), ("sampleSize",), ("features",),
                  ("features", "amount", "kind"), ("features", "amount", "edges"),
                  ("features", "amount", "proportions"), ("features", "amount", "missing"),
                  ("features", "industry", "kind"), ("features", "industry", "categories"),
                  ("features", "industry", "proportions"), ("features", "industry", "other"),
                  ("features", "industry", "missing")],
    "trigger": [("job",)],
    "drift": [(f,) for f in ("eventId", "jobRunId", "tenantId", "modelId", "modelVersion", "segment", "feature",
                             "metric", "value", "threshold", "delta", "severity", "sampleSize",
                             "baselineSampleSize", "windowStart", "windowEnd", "detectedAt")],
    "degraded": [(f,) for f in ("eventId", "jobRunId", "tenantId", "modelId", "modelVersion", "segment", "metric",
                                "value", "baseline", "threshold", "delta", "sampleSize", "windowStart",
                                "windowEnd", "detectedAt")],
    "snapshot": [(f,) for f in ("jobRunId", "tenantId", "modelId", "modelVersion", "segment", "windowStart",
                                "windowEnd", "sampleSize", "features", "performance")]
    + [("features", "amount", f) for f in ("metric", "value", "status", "severity", "gate", "sampleSize", "bins")]
    + [("features", "amount", "bins", 0, f) for f in ("bin", "expected", "actual", "contribution")]
    + [("performance", "mae", f) for f in ("value", "baseline", "threshold", "status", "sampleSize")],
    "completed": [(f,) for f in ("job", "jobRunId", "tenants", "driftChecked", "performanceChecked",
                                 "driftDetected", "performanceDegraded", "durationMs", "completedAt")],
    "failed": [("job",), ("jobRunId",), ("error",), ("failedAt",)],
    "resolved": [(f,) for f in ("eventId", "incidentId", "jobRunId", "tenantId", "modelId", "modelVersion",
                                "segment", "feature", "value", "clearThreshold", "openedAt", "resolvedAt")],
    "recovered": [(f,) for f in ("eventId", "incidentId", "jobRunId", "tenantId", "modelId", "modelVersion",
                                 "segment", "metric", "value", "clearThreshold", "openedAt", "resolvedAt")],
}
REQUIRED_CASES = [(kind, path) for kind, paths in REQUIRED.items() for path in paths]


@pytest.mark.parametrize(("kind", "path"), REQUIRED_CASES, ids=[f"{k}:{_dotted(p)}" for k, p in REQUIRED_CASES])
def test_missing_field_is_rejected(kind: str, path: tuple[Any, ...]) -> None:
    error = rejected(kind, _with(example(kind), path, delete=True))
    assert (error.reason, error.detail) == ("schema", f"{_dotted(path)}: is required")


@pytest.mark.parametrize("kind", TOPIC_KINDS)
def test_required_top_level_fields_are_exactly_the_contracts(kind: str) -> None:
    assert set(load_schema(kind)["required"]) == {p[0] for p in REQUIRED[kind] if len(p) == 1}


NAIVE = "2026-11-20T10:00:00"
NO_MS_UTC = "2026-11-22T06:00:00Z"
TOO_LONG_ID = "x" * 257

# (kind, path, bad value). The detail must name the path (or a place inside a bad container).
MISTYPED: list[tuple[str, tuple[Any, ...], Any]] = [
    *[("features", (f,), bad) for f in ("predictionId", "tenantId", "modelId", "modelVersion")
      for bad in (1, "", TOO_LONG_ID, None)],
    ("features", ("modelVersion",), 3),
    *[("features", ("timestamp",), bad) for bad in (NAIVE, "yesterday", "2026-13-01T00:00:00Z",
                                                       "2026-02-29T10:00:00Z", "2026-11-20T25:00:00Z", -1, 1.5,
                                                       True, None, MAX_TIMESTAMP_MS + 1, "1969-12-31T23:59:59Z",
                                                       "2026-11-20T10:00:00Z\n", "٢٠٢٦-11-20T10:00:00Z")],
    *[("features", ("prediction",), bad) for bad in ("0.73", None, True, [0.73], math.nan, math.inf)],
    *[("features", ("segment",), bad) for bad in (1, {"region": "emea"}, TOO_LONG_ID, False)],
    *[("features", ("features",), bad) for bad in ([], "amount=1", None, {"": 1}, {"x" * 257: 1})],
    *[("features", ("features", "amount"), bad) for bad in ([1200.5], {"value": 1}, "x" * 1025, -math.inf)],
    *[("outcomes", (f,), bad) for f in ("predictionId", "tenantId", "modelId") for bad in (7, "")],
    *[("outcomes", ("outcome",), bad) for bad in ("NaN", "1", None, True, math.nan)],
    *[("outcomes", ("timestamp",), bad) for bad in (NAIVE, "", -5, [])],
    *[("baselines", ("tenantId",), bad) for bad in (1, "", TOO_LONG_ID)],
    *[("baselines", (f,), bad) for f in ("modelId", "modelVersion") for bad in (None, 3, "")],
    *[("baselines", ("task",), bad) for bad in ("classify", None, 1)],
    *[("baselines", ("sampleSize",), bad) for bad in (0, 1.5, "20000", None, True)],
    *[("baselines", ("features",), bad) for bad in ([], None, {"amount": 1})],
    ("baselines", ("features", "amount", "kind"), "histogram"),
    *[("baselines", ("features", "amount", "edges"), bad) for bad in ("10,25", [10.0, "25.5", 40.0], None)],
    *[("baselines", ("features", "amount", "proportions"), bad) for bad in ([], [0.2, 0.3, 1.3, 0.2], "x")],
    *[("baselines", ("features", "amount", "missing"), bad) for bad in (-0.1, 1.1, None, "0")],
    *[("baselines", ("features", "industry", "categories"), bad) for bad in ([1, 2], "retail", None)],
    *[("baselines", ("features", "industry", "proportions"), bad) for bad in ([0.6, -0.35], None)],
    *[("baselines", ("features", "industry", f), bad) for f in ("other", "missing") for bad in ("x", None, 2)],
    *[("baselines", ("performance",), bad) for bad in ([], 0.12, None)],
    *[("baselines", ("performance", m), bad) for m in ("brier", "mae") for bad in ("0.12", -0.1, [])],
    *[("trigger", ("job",), bad) for bad in (1, None, ["model-monitoring"])],
    *[("trigger", ("jobRunId",), bad) for bad in ("", "run 1", "run/1", "x" * 129, 5, None)],
    *[("trigger", ("metadata",), bad) for bad in ("tenant-1", [], 1)],
    *[("trigger", ("metadata", "tenantIds"), bad) for bad in ("tenant-1", [1], [""], [TOO_LONG_ID], {})],
    *[("trigger", ("metadata", "windowEnd"), bad) for bad in (NAIVE, "soon", -1, None, 1.5)],
    *[("trigger", ("triggeredAt",), bad) for bad in (NAIVE, True, None)],
    *[(kind, ("eventId",), bad) for kind in ("drift", "degraded") for bad in (1, "", None)],
    *[(kind, ("jobRunId",), bad) for kind in ("drift", "degraded", "snapshot", "completed", "failed")
      for bad in ("run 1", "", 7)],
    # a continuous alert (issue 14) has jobRunId null; every other message needs one
    *[(kind, ("jobRunId",), None) for kind in ("snapshot", "completed", "failed")],
    *[(kind, (f,), bad) for kind in ("drift", "degraded", "snapshot") for f in ("tenantId", "modelId", "modelVersion")
      for bad in (None, 3, "")],
    *[(kind, ("segment",), bad) for kind in ("drift", "degraded", "snapshot") for bad in (1, TOO_LONG_ID)],
    *[(kind, (f,), bad) for kind in ("drift", "degraded", "snapshot") for f in ("windowStart", "windowEnd")
      for bad in (NO_MS_UTC, "2026-11-22T06:00:00.000+00:00", 1795000000000, None, "2026-11-31T06:00:00.000Z")],
    *[(kind, ("detectedAt",), bad) for kind in ("drift", "degraded") for bad in (NO_MS_UTC, NAIVE + ".000", None)],
    *[("drift", ("feature",), bad) for bad in ("", 1, None)],
    *[("drift", ("metric",), bad) for bad in ("kl", None)],
    *[(kind, (f,), bad) for kind in ("drift", "degraded") for f in ("value", "threshold")
      for bad in ("0.31", -1, None, math.nan)],
    *[(kind, ("delta",), bad) for kind in ("drift", "degraded") for bad in ("x", None, math.inf)],
    *[("drift", ("severity",), bad) for bad in ("high", None, "Critical")],
    *[(kind, ("sampleSize",), bad) for kind in ("drift", "degraded", "snapshot") for bad in (-1, 1.5, "812", None)],
    *[("drift", ("baselineSampleSize",), bad) for bad in (0, 1.5, None)],
    *[("degraded", ("metric",), bad) for bad in ("rmse", None)],
    *[("degraded", ("baseline",), bad) for bad in ("0.12", -0.1, None)],
    *[("snapshot", ("features",), bad) for bad in ([], None)],
    *[("snapshot", ("features", "amount"), bad) for bad in (0.31, None)],
    *[("snapshot", ("features", "amount", "metric"), bad) for bad in ("kl", None)],
    *[("snapshot", ("features", "amount", "value"), bad) for bad in ("0.31", -0.1)],
    *[("snapshot", ("features", "amount", "status"), bad) for bad in ("bad", None, "degraded")],
    *[("snapshot", ("features", "amount", "severity"), bad) for bad in ("high", None)],
    *[("snapshot", ("features", "amount", "gate"), bad) for bad in ("x", -1)],
    *[("snapshot", ("features", "amount", f), bad) for f in ("pValue", "qValue") for bad in ("0.01", -0.1, 1.5)],
    *[("snapshot", ("features", "amount", "psiLower"), bad) for bad in ("0.2", -0.1)],
    *[("snapshot", ("performance", "brier", f), bad) for f in ("pValue", "qValue") for bad in ("x", 2)],
    *[("drift", (f,), bad) for f in ("pValue", "qValue") for bad in ("0.01", -1, 1.01)],
    *[("drift", ("psiLower",), bad) for bad in ("0.3", -0.5)],
    *[("degraded", (f,), bad) for f in ("pValue", "qValue") for bad in ("0.01", -1, 1.01)],
    *[("snapshot", ("features", "amount", "sampleSize"), bad) for bad in (-1, None)],
    *[("snapshot", ("features", "amount", "bins"), bad) for bad in ({}, None, [1])],
    *[("snapshot", ("features", "amount", "bins", 0, "bin"), bad) for bad in ("", 0)],
    *[("snapshot", ("features", "amount", "bins", 0, f), bad) for f in ("expected", "actual")
      for bad in (1.5, -0.1, None)],
    *[("snapshot", ("features", "amount", "bins", 0, "contribution"), bad) for bad in ("0.21", None)],
    *[("snapshot", ("performance",), bad) for bad in ([], None)],
    *[("snapshot", ("performance", m), bad) for m in ("brier", "mae", "auc") for bad in (0.19, None)],
    *[("snapshot", ("performance", "brier", f), bad) for f in ("value", "baseline", "threshold")
      for bad in ("0.19", -1)],
    *[("snapshot", ("performance", "brier", "status"), bad) for bad in ("drift", None)],
    *[("snapshot", ("performance", "brier", "sampleSize"), bad) for bad in (-1, None, 1.5)],
    *[("completed", ("job",), bad) for bad in ("", None, 1)],
    *[("completed", ("tenants",), bad) for bad in ("tenant-1", [1], [""], None)],
    *[("completed", (f,), bad) for f in ("driftChecked", "performanceChecked", "driftDetected",
                                         "performanceDegraded", "durationMs") for bad in (-1, 1.5, "40", None)],
    *[("completed", ("completedAt",), bad) for bad in (NO_MS_UTC, None)],
    *[("failed", ("job",), bad) for bad in ("", None)],
    *[("failed", ("error",), bad) for bad in ("", None, 1, "x" * 4097)],
    *[("failed", ("failedAt",), bad) for bad in (NO_MS_UTC, "x", None)],
    *[(kind, (f,), bad) for kind in ("drift", "degraded") for f, bad in (
        ("incidentId", ""), ("incidentId", None), ("incidentStatus", "resolved"), ("incidentStatus", None),
        ("openedAt", NO_MS_UTC), ("segments", {}), ("segments", [{}]), ("segments", [{"segment": "emea"}]))],
    *[("drift", ("segments",), bad) for bad in (
        [{"segment": "emea", "value": 0.3, "psiLower": 0.2, "severity": "high", "sampleSize": 10}],
        [{"segment": None, "value": 0.3, "psiLower": 0.2, "severity": "warning", "sampleSize": 10}])],
    *[("drift", ("kind",), bad) for bad in ("label", None)],
    *[("degraded", ("windowBasis",), bad) for bad in ("cohort", None)],
    *[(kind, (f,), bad) for kind in ("resolved", "recovered") for f, bad in (
        ("eventId", ""), ("incidentId", None), ("jobRunId", "run 1"), ("segment", 1), ("value", -0.1),
        ("value", None), ("clearThreshold", "0.08"), ("openedAt", NO_MS_UTC), ("resolvedAt", None),
        ("resolution", "gone"), ("quietRuns", 0))],
    ("resolved", ("feature",), ""),
    ("recovered", ("metric",), "rmse"),
]
def _case_id(kind: str, path: tuple[Any, ...], bad: Any) -> str:
    return f"{kind}:{_dotted(path)}={bad!r}"[:80]


@pytest.mark.parametrize(("kind", "path", "bad"), MISTYPED, ids=[_case_id(*case) for case in MISTYPED])
def test_mistyped_field_is_rejected(kind: str, path: tuple[Any, ...], bad: Any) -> None:
    message = example(kind)
    if path == ("performance", "auc"):
        message["performance"]["auc"] = None  # an added metric is typed like the named ones
    error = rejected(kind, _with(message, path, bad))
    assert error.reason == "schema"
    named = _dotted(path)
    assert re.match(re.escape(named) + r"[:.\[]", error.detail), error.detail
    assert len(error.detail) <= rejection.MAX_DETAIL_CHARS


def test_detail_names_the_failing_path_in_plain_words() -> None:
    record = example("features")
    record["features"]["amount"] = [1]
    assert rejected("features", record).detail == "features.amount: must be number, string, boolean or null"
    record = example("features")
    record["timestamp"] = NAIVE
    assert rejected("features", record).detail == (
        "timestamp: must be an ISO-8601 date-time with a zone, e.g. 2026-11-20T10:00:00Z"
    )
    assert rejected("features", ["not", "a", "record"]).detail == "(root): must be object"


@pytest.mark.parametrize(
    ("kind", "path", "good"),
    [
        ("features", ("segment",), None),
        ("features", ("timestamp",), 1795168800000),
        ("features", ("timestamp",), "2026-11-20T11:00:00+01:00"),
        ("features", ("features",), {}),
        ("features", ("features", "flag"), True),
        ("features", ("features", "amount"), -3),
        ("features", ("addedLater",), {"any": ["thing"]}),
        ("outcomes", ("outcome",), 0.5),
        ("outcomes", ("timestamp",), 0),
        ("baselines", ("tenantId",), "tenant-1"),
        ("baselines", ("performance",), {"brier": None, "mae": 0.3}),
        ("baselines", ("performance",), {}),
        ("trigger", ("jobRunId",), "a" * 128),
        ("trigger", ("metadata",), None),
        ("trigger", ("metadata", "tenantIds"), None),
        ("trigger", ("metadata", "tenantIds"), [f"t-{i}" for i in range(10_000)]),
        ("trigger", ("metadata", "windowEnd"), 1795000000000),
        ("trigger", ("job",), "some-other-job"),
        ("drift", ("segment",), "emea"),
        ("drift", ("severity",), "warning"),
        ("snapshot", ("features", "amount", "gate"), None),
        *[("snapshot", ("features", "amount", f), v) for f in ("pValue", "qValue", "psiLower") for v in (None, 0, 0.7)],
        *[("drift", (f,), v) for f in ("pValue", "qValue", "psiLower") for v in (None, 0.0, 1e-300)],
        *[("degraded", (f,), v) for f in ("pValue", "qValue") for v in (None, 1)],
        ("snapshot", ("performance", "brier", "value"), None),
        ("completed", ("tenants",), []),
        *[(kind, (f,), good) for kind in ("drift", "degraded") for f, good in INCIDENT_FIELDS.items()],
        *[(kind, ("incidentStatus",), good) for kind in ("drift", "degraded") for good in ("ongoing", "escalated")],
        *[(kind, ("segments",), []) for kind in ("drift", "degraded")],
        ("drift", ("segments",), [{"segment": "emea", "value": 0.3, "psiLower": 0.2, "severity": "warning",
                                   "sampleSize": 800, "pValue": 0.001, "qValue": 0.01}]),
        ("drift", ("segments",), [{"segment": "emea", "value": 0.3, "psiLower": None, "severity": "critical",
                                   "sampleSize": 800}]),
        ("degraded", ("segments",), [{"segment": "emea", "value": 0.2, "threshold": 0.132, "sampleSize": 300}]),
        *[("drift", ("kind",), good) for good in ("feature", "prediction")],
        *[("drift", ("metric",), good) for good in ("missing_share", "prediction_mean")],
        *[("degraded", ("windowBasis",), good) for good in ("outcome", "prediction")],
        *[("degraded", ("metric",), good) for good in ("ece", "label_coverage")],
        *[(kind, ("detector",), "weekly") for kind in ("drift", "degraded")],
        ("resolved", ("segment",), "emea"),
        ("resolved", ("psiLower",), None),
        ("resolved", ("resolution",), "quiet_runs"),
        ("recovered", ("baseline",), None),
        *[(kind, ("clearThreshold",), None) for kind in ("resolved", "recovered")],
    ],
)
def test_allowed_variants_validate(kind: str, path: tuple[Any, ...], good: Any) -> None:
    VALIDATORS.validate(kind, _with(example(kind), path, good))


@pytest.mark.parametrize(
    ("kind", "path"),
    [("features", ("segment",)), ("trigger", ("jobRunId",)), ("trigger", ("metadata",)),
     ("trigger", ("triggeredAt",)), ("trigger", ("metadata", "tenantIds")), ("trigger", ("metadata", "windowEnd")),
     ("baselines", ("performance",)), ("baselines", ("performance", "brier"))],
)
def test_optional_field_may_be_absent(kind: str, path: tuple[Any, ...]) -> None:
    VALIDATORS.validate(kind, _with(example(kind), path, delete=True))


def test_trigger_tenant_ids_are_capped_at_10000() -> None:
    trigger = _with(example("trigger"), ("metadata", "tenantIds"), [f"t-{i}" for i in range(10_001)])
    assert rejected("trigger", trigger).detail.startswith("metadata.tenantIds:")


def test_snapshot_severity_is_set_exactly_when_drift() -> None:
    snapshot = example("snapshot")
    snapshot["features"]["amount"]["status"] = "ok"
    assert rejected("snapshot", snapshot).detail.startswith("features.amount.severity:")
    snapshot["features"]["amount"]["severity"] = None
    VALIDATORS.validate("snapshot", snapshot)
    snapshot["features"]["amount"]["status"] = "drift"
    assert rejected("snapshot", snapshot).detail.startswith("features.amount.severity:")


@pytest.mark.parametrize("kind", ["features", "baselines"])
def test_feature_count_cap_is_configurable(kind: str) -> None:
    message = example(kind)
    small = Validators(max_features=len(message["features"]))
    small.validate(kind, message)
    extra = copy.deepcopy(message["features"]["amount"])
    message["features"]["extra"] = extra
    assert rejected(kind, message, small).detail.startswith("features:")
    VALIDATORS.validate(kind, message)


def test_default_feature_cap_is_2000() -> None:
    record = example("features")
    record["features"] = {f"f{i}": i for i in range(2000)}
    VALIDATORS.validate("features", record)
    record["features"]["one-more"] = 1
    assert rejected("features", record).detail.startswith("features:")


@pytest.mark.parametrize(
    ("path", "bad", "says"),
    [
        (("features", "amount", "edges"), [10.0, 40.0, 25.5], "features.amount.edges: must be strictly increasing"),
        (("features", "amount", "edges"), [10.0, 10.0, 40.0], "features.amount.edges: must be strictly increasing"),
        (("features", "amount", "proportions"), [0.2, 0.3, 0.5], "features.amount.proportions: must have"),
        (("features", "amount", "missing"), 0.1, "features.amount: proportions, other and missing must sum to 1"),
        (("features", "industry", "categories"), ["retail", "retail"], "features.industry.categories: must be unique"),
        (("features", "industry", "proportions"), [0.95], "features.industry.proportions: must have"),
        (("features", "industry", "other"), 0.0, "features.industry: proportions, other and missing must sum to 1"),
    ],
)
def test_baseline_bins_must_be_consistent(path: tuple[Any, ...], bad: Any, says: str) -> None:
    error = rejected("baselines", _with(example("baselines"), path, bad))
    assert error.reason == "schema" and error.detail.startswith(says), error.detail


def test_baseline_shares_tolerate_rounding() -> None:
    """Shares written with 7 decimals pass; 4e-4 off does not: the tolerance is 1e-6
    (test_regression_shares_tolerance.py)."""
    thirds = [0.3333333, 0.3333333, 0.3333333, 0.0]  # sum 0.9999999
    VALIDATORS.validate("baselines", _with(example("baselines"), ("features", "amount", "proportions"), thirds))
    baseline = _with(example("baselines"), ("features", "amount", "proportions"), [0.2, 0.3, 0.3, 0.1996])
    assert rejected("baselines", baseline).detail == (
        "features.amount: proportions, other and missing must sum to 1, not 0.9996")


# --- decoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "invalid_json"),
        (b"", "invalid_json"),
        (b"   ", "invalid_json"),
        (b'{"predictionId": "p-\xff"}', "invalid_utf8"),
        (b'{"predictionId": "\xed\xa0\x80"}', "invalid_utf8"),  # an encoded surrogate
        (b'\xc3{"a": 1}', "invalid_utf8"),
        (b'{"predictionId": "p-1", "prediction": 0.7', "invalid_json"),
        (b'{"predictionId": "p-1",}', "invalid_json"),
        (b"\xef\xbb\xbf{}", "invalid_json"),
        (b'{"outcome": NaN}', "invalid_json"),
        (b'{"outcome": Infinity}', "invalid_json"),
        (b'{"outcome": -1e400}', "invalid_json"),
        (b'"\\ud800"', "invalid_json"),
        (b"[" * 10_000 + b"]" * 10_000, "invalid_json"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "invalid_json"),
    ],
)
def test_undecodable_payload_is_rejected(raw: bytes | None, reason: str) -> None:
    with pytest.raises(MessageRejected) as info:
        decode_json(raw, MAX_BYTES)
    assert info.value.reason == reason
    assert info.value.detail


def test_payload_over_the_limit_is_too_large() -> None:
    raw = orjson.dumps(example("features"))
    assert decode_json(raw, len(raw)) == example("features")
    assert decode_json(memoryview(raw), len(raw)) == example("features")
    with pytest.raises(MessageRejected) as info:
        decode_json(raw, len(raw) - 1)
    assert info.value.reason == "too_large"
    assert str(len(raw)) in info.value.detail


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(MessageRejected) as info:
        decode_json(b"\xff" * 100, 10)
    assert info.value.reason == "too_large"


def test_nan_as_a_string_is_not_a_number() -> None:
    raw = b'{"predictionId": "p-1", "tenantId": "tenant-1", "modelId": "risk-scoring", "outcome": "NaN", "timestamp": "2026-12-02T09:00:00Z"}'
    error = rejected("outcomes", decode_json(raw, MAX_BYTES))
    assert (error.reason, error.detail) == ("schema", "outcome: must be number")


def test_moderate_nesting_decodes_and_is_validated() -> None:
    raw = orjson.dumps(example("features"))[:-1] + b', "extra": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    record = decode_json(raw, MAX_BYTES)
    assert VALIDATORS.validate("features", record) is record
    record["extra"] = [[[[[{"deep": math.nan}]]]]]
    assert rejected("features", record).detail == "extra[0][0][0][0][0].deep: must be a finite number"


# --- envelopes --------------------------------------------------------------------------------


def test_single_record_is_a_list_of_one() -> None:
    record = example("features")
    assert split_envelope(record) == [record]
    record["records"] = "a field the producer added"
    assert split_envelope(record) == [record]


def test_envelope_with_good_and_bad_records() -> None:
    good = example("features")
    other = {**good, "predictionId": "p-2", "timestamp": 1795168800000, "segment": None}
    no_tenant = {k: v for k, v in good.items() if k != "tenantId"}
    nested = {**good, "predictionId": "p-4", "features": {"amount": {"value": 1}}}
    raw = orjson.dumps({"records": [good, no_tenant, other, "junk", nested]})

    outcomes: list[tuple[str, object]] = []
    for record in split_envelope(decode_json(raw, MAX_BYTES)):
        try:
            VALIDATORS.validate("features", record)
            outcomes.append(("ok", InferenceRecord.from_dict(record).prediction_id))
        except MessageRejected as error:
            outcomes.append((error.reason, error.detail))
    assert outcomes == [
        ("ok", "p-1"),
        ("schema", "tenantId: is required"),
        ("ok", "p-2"),
        ("schema", "(root): must be object"),
        ("schema", "features.amount: must be number, string, boolean or null"),
    ]


@pytest.mark.parametrize("records", [{"0": {}}, "p-1", None, 3])
def test_envelope_records_must_be_a_list(records: Any) -> None:
    with pytest.raises(MessageRejected) as info:
        split_envelope({"records": records})
    assert (info.value.reason, info.value.detail) == ("schema", "records: must be array")


def test_empty_envelope_has_no_records() -> None:
    assert split_envelope({"records": []}) == []


# --- timestamps -------------------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-11-20T10:00:00Z", 1795168800000),
        ("2026-11-20T10:00:00.000Z", 1795168800000),
        ("2026-11-20t10:00:00z", 1795168800000),
        ("2026-11-20 10:00:00Z", 1795168800000),
        ("2026-11-20T10:00Z", 1795168800000),
        ("2026-11-20T11:30:00+01:30", 1795168800000),
        ("2026-11-20T11:30:00+0130", 1795168800000),
        ("2026-11-20T05:00:00-05", 1795168800000),
        ("2026-11-20T10:00:00-00:00", 1795168800000),
        ("2026-11-20T10:00:00.1239Z", 1795168800123),
        ("2026-11-20T10:00:00,5Z", 1795168800500),
        ("2026-11-20T10:00:00.999999999Z", 1795168800999),
        ("2016-12-31T23:59:60Z", 1483228800000),
        ("1970-01-01T00:00:00Z", 0),
        ("9999-12-31T23:59:59.999Z", MAX_TIMESTAMP_MS),
        (1795168800000, 1795168800000),
        (1795168800000.0, 1795168800000),
        (0, 0),
    ],
)
def test_parse_timestamp(text: str | int, ms: int) -> None:
    assert parse_timestamp_ms(text) == ms


@pytest.mark.parametrize(
    "bad",
    [NAIVE, "2026-11-20", "2026-11-20T10:00:00+24:00", "2026-11-20T10:00:00+01:60", "2026-02-30T10:00:00Z",
     "2026-11-20T10:60:00Z", "2026-11-20T24:00:00Z", "0000-01-01T00:00:00Z", "1969-12-31T23:59:59.999Z",
     "1970-01-01T00:30:00+01:00", "9999-12-31T23:59:59-01:00", "20261120T100000Z", "2026-11-20T10:00:00 Z",
     "", -1, MAX_TIMESTAMP_MS + 1, 1.5, True, None, [1]],
)
def test_parse_timestamp_rejects(bad: Any) -> None:
    with pytest.raises(MessageRejected) as info:
        parse_timestamp_ms(bad)
    assert info.value.reason == "schema"


def test_format_timestamp_is_one_fixed_format() -> None:
    assert format_timestamp(1795168800000) == "2026-11-20T10:00:00.000Z"
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp(1795168800007) == "2026-11-20T10:00:00.007Z"
    assert format_timestamp(MAX_TIMESTAMP_MS) == "9999-12-31T23:59:59.999Z"
    for bad in (-1, MAX_TIMESTAMP_MS + 1):
        with pytest.raises(ValueError):
            format_timestamp(bad)
    with pytest.raises(TypeError):
        format_timestamp(1.0)  # type: ignore[arg-type]


@given(st.integers(0, MAX_TIMESTAMP_MS))
def test_timestamp_round_trip_from_ms(ms: int) -> None:
    text = format_timestamp(ms)
    assert text == (EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert parse_timestamp_ms(text) == ms
    VALIDATORS.validate("failed", {**FAILED_EXAMPLE, "failedAt": text})


zones = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda minutes: timezone(timedelta(minutes=minutes)))


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones))
def test_timestamp_round_trip_from_iso(moment: datetime) -> None:
    text = moment.isoformat()
    ms = (moment - EPOCH) // timedelta(milliseconds=1)
    assert parse_timestamp_ms(text) == ms
    assert parse_timestamp_ms(format_timestamp(ms)) == ms
    VALIDATORS.validate("features", {**example("features"), "timestamp": text})


# --- models -----------------------------------------------------------------------------------


def test_inference_record_from_contract_example() -> None:
    record = InferenceRecord.from_dict(example("features"))
    assert record == InferenceRecord(
        prediction_id="p-1", tenant_id="tenant-1", model_id="risk-scoring", model_version="3",
        timestamp_ms=1795168800000, prediction=0.73, segment="emea",
        features={"amount": 1200.5, "industry": "retail", "age_days": None},
    )
    no_segment = {k: v for k, v in example("features").items() if k != "segment"}
    assert InferenceRecord.from_dict(no_segment).segment is None


def test_outcome_record_from_contract_example() -> None:
    outcome = OutcomeRecord.from_dict(example("outcomes"))
    assert outcome == OutcomeRecord("p-1", "tenant-1", "risk-scoring", 1.0, 1796202000000)
    assert type(outcome.outcome) is float


def test_job_trigger_from_contract_example() -> None:
    trigger = JobTrigger.from_dict(example("trigger"))
    assert trigger == JobTrigger("model-monitoring", "optional-id", ("tenant-1",), 1795932000000, 1795932000000)
    assert JobTrigger.from_dict({"job": "model-monitoring"}) == JobTrigger("model-monitoring")
    assert JobTrigger.from_dict({"job": "j", "metadata": None}).tenant_ids is None
    assert JobTrigger.from_dict({"job": "j", "metadata": {"tenantIds": []}}).tenant_ids == ()
    assert JobTrigger.from_dict({"job": "j", "metadata": {"tenantIds": ["b", "a", "b"]}}).tenant_ids == ("b", "a")


@pytest.mark.parametrize(
    ("model", "kind"),
    [(InferenceRecord, "features"), (OutcomeRecord, "outcomes"), (JobTrigger, "trigger")],
)
def test_model_codec_round_trip(model: Any, kind: str) -> None:
    value = model.from_dict(example(kind))
    message = value.to_dict()
    VALIDATORS.validate(kind, decode_json(orjson.dumps(message), MAX_BYTES))
    assert model.from_dict(message) == value
    assert pickle.loads(pickle.dumps(value)) == value


def test_minimal_trigger_round_trips() -> None:
    trigger = JobTrigger("model-monitoring", window_end_ms=5)
    assert trigger.to_dict() == {"job": "model-monitoring", "metadata": {"windowEnd": "1970-01-01T00:00:00.005Z"}}
    assert JobTrigger.from_dict(trigger.to_dict()) == trigger


@pytest.mark.parametrize("model", [InferenceRecord, OutcomeRecord, JobTrigger])
def test_models_are_frozen_with_slots(model: Any) -> None:
    kind = {InferenceRecord: "features", OutcomeRecord: "outcomes", JobTrigger: "trigger"}[model]
    value = model.from_dict(example(kind))
    assert not hasattr(value, "__dict__")
    # the records are frozen msgspec Structs (built per record: fast), the trigger a dataclass;
    # either refuses the assignment with an AttributeError (FrozenInstanceError is one)
    name = (value.__struct_fields__[0] if isinstance(value, msgspec.Struct)
            else dataclasses.fields(value)[0].name)
    with pytest.raises(AttributeError):
        setattr(value, name, "other")
    assert getattr(value, name) != "other"


def test_from_dict_does_not_validate() -> None:
    record = example("features")
    record["prediction"] = 7  # an int where a probability would be: converted, not checked
    record["features"] = {"amount": [1, 2]}
    assert InferenceRecord.from_dict(record).features == {"amount": [1, 2]}


# --- MessageRejected --------------------------------------------------------------------------


def test_message_rejected_carries_reason_and_detail() -> None:
    error = MessageRejected("schema", "features.amount: must be number")
    assert (error.reason, error.detail, str(error)) == (
        "schema", "features.amount: must be number", "schema: features.amount: must be number"
    )
    copied = pickle.loads(pickle.dumps(error))
    assert (copied.reason, copied.detail) == (error.reason, error.detail)
    long = MessageRejected("schema", "x" * 10_000)
    assert len(long.detail) == rejection.MAX_DETAIL_CHARS


# --- never anything but MessageRejected -------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
    | st.sampled_from(["", "…", "p-1", "2026-11-20T10:00:00Z", "2026-02-30T10:00:00Z", "numeric", "categorical",
                       "drift", "ok", "model-monitoring", "9999-12-31T23:59:59-01:00"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)


def _validate_or_reject(kind: str, obj: object) -> bool:
    """True if `obj` is valid; a rejection must be a short, named MessageRejected."""
    try:
        VALIDATORS.validate(kind, obj)
    except MessageRejected as error:
        assert error.reason == "schema"
        assert isinstance(error.detail, str) and 0 < len(error.detail) <= rejection.MAX_DETAIL_CHARS
        return False
    return True


FROM_DICT = {"features": InferenceRecord.from_dict, "outcomes": OutcomeRecord.from_dict, "trigger": JobTrigger.from_dict}
fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_message_rejected(raw: bytes) -> None:
    try:
        obj = decode_json(raw, 200)
    except MessageRejected as error:
        assert error.reason in {"invalid_json", "invalid_utf8", "too_large"}
        return
    for kind in TOPIC_KINDS:
        for record in split_envelope(obj) if kind == "features" and not _is_bad_envelope(obj) else [obj]:
            _validate_or_reject(kind, record)


def _is_bad_envelope(obj: object) -> bool:
    try:
        split_envelope(obj)
    except MessageRejected:
        return True
    return False


@fuzz
@given(st.sampled_from(TOPIC_KINDS), json_values)
def test_arbitrary_objects_raise_only_message_rejected(kind: str, obj: Any) -> None:
    _validate_or_reject(kind, obj)
    try:
        raw = orjson.dumps(obj)  # NaN and infinities become null on the wire
    except orjson.JSONEncodeError:  # an int beyond 64 bits: not sendable with orjson
        return
    _validate_or_reject(kind, decode_json(raw, MAX_BYTES))


@fuzz
@given(st.sampled_from(TOPIC_KINDS), st.data())
def test_mutated_examples_raise_only_message_rejected(kind: str, data: st.DataObject) -> None:
    message = example(kind)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = json_paths(message)
        assume(paths)
        path = data.draw(st.sampled_from(paths))
        action = data.draw(st.sampled_from(["replace", "delete", "add key"]))
        if action == "replace":
            message = _with(message, path, data.draw(json_values))
        elif action == "delete" and isinstance(path[-1], str):
            message = _with(message, path, delete=True)
        elif action == "add key":
            parent = message
            for part in path[:-1]:
                parent = parent[part]
            if isinstance(parent, dict):  # a new key next to an existing one, "" included
                key = data.draw(st.sampled_from(["", "k" * 257]) | st.text(max_size=3))
                message = _with(message, (*path[:-1], key), data.draw(json_values))
    if _validate_or_reject(kind, message) and kind in FROM_DICT:
        FROM_DICT[kind](message)  # whatever validates converts without error


MAPS = [("features", ("features",)), ("baselines", ("features",)), ("baselines", ("performance",)),
        ("snapshot", ("features",)), ("snapshot", ("performance",)), ("trigger", ("metadata",)),
        ("features", ()), ("outcomes", ()), ("drift", ())]


@fuzz
@given(st.sampled_from(MAPS), st.sampled_from(["", "k" * 257, "records"]) | st.text(max_size=300), json_values)
def test_arbitrary_keys_raise_only_message_rejected(where: tuple[str, tuple[str, ...]], key: str, value: Any) -> None:
    kind, path = where
    _validate_or_reject(kind, _with(example(kind), (*path, key), value))
