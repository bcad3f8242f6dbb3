"""The bad-input scenario's bad messages, each labelled with the reason it must be dead-lettered
with: a third hand-made (invalid UTF-8, truncated JSON, NaN, deep nesting, 5 MB ...), the rest
hypothesis-drawn (wrong types, missing fields, arbitrary JSON, envelopes mixing good and bad)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

from bench.scenarios.bad_values import JSON_VALUES, draw, dumps, wrong_types

INVALID_UTF8, INVALID_JSON, SCHEMA = "invalid_utf8", "invalid_json", "schema"
TOO_LARGE, UNKNOWN_JOB = "too_large", "unknown_job"
FEATURE_FIELDS = ("predictionId", "tenantId", "modelId", "modelVersion", "timestamp", "prediction",
                  "features")
OUTCOME_FIELDS = ("predictionId", "tenantId", "modelId", "outcome", "timestamp")


@dataclass(frozen=True)
class Bad:
    """A message the service must dead-letter (or an envelope holding such records)."""

    kind: str                      # features | outcomes | trigger
    key: bytes
    value: bytes
    category: str
    reasons: dict[int, str]        # index in the envelope (-1: the message) -> reason
    good_records: int = 0          # good records inside an envelope
    late: bool = False             # sent after the rest of the log (too old by then)


class Factory:
    """Builds labelled bad messages from templates of good records."""

    def __init__(self, rng: random.Random, features: list[dict[str, Any]], outcomes: list[dict[str, Any]]):
        self.rng, self.features, self.outcomes = rng, features, outcomes
        self.n = 0

    def key(self, prefix: str = "bad") -> bytes:
        self.n += 1
        return f"{prefix}-{self.n}".encode()

    def template(self, kind: str) -> dict[str, Any]:
        doc = dict(self.rng.choice(self.features if kind == "features" else self.outcomes))
        doc["predictionId"] = f"bad-record-{self.n}"
        if kind == "features":
            doc["features"] = dict(doc["features"])
        return doc

    def message(self, kind: str, value: bytes, category: str, reason: str) -> Bad:
        return Bad(kind, self.key(), value, category, {-1: reason})

    def kind(self) -> str:
        return self.rng.choice(("features", "outcomes"))

    # each returns one bad message
    def invalid_utf8(self) -> Bad:
        kind = self.kind()
        raw = orjson.dumps(self.template(kind)).replace(b'"tenantId":"', b'"tenantId":"\xff\xfe\xc3', 1)
        return self.message(kind, raw, "invalid UTF-8", INVALID_UTF8)

    def truncated(self) -> Bad:
        kind = self.kind()
        raw = orjson.dumps(self.template(kind))
        return self.message(kind, raw[: self.rng.randint(1, len(raw) - 1)], "truncated JSON", INVALID_JSON)

    def nan_inf_string(self) -> Bad:
        kind = self.kind()
        doc = self.template(kind)
        doc["prediction" if kind == "features" else "outcome"] = self.rng.choice(
            ["NaN", "nan", "Infinity", "-Infinity", "inf", "-inf", "+inf"])
        return self.message(kind, orjson.dumps(doc), "NaN/inf as strings", SCHEMA)

    def nan_inf_literal(self) -> Bad:
        kind = self.kind()
        field = "prediction" if kind == "features" else "outcome"
        doc = self.template(kind)
        doc[field] = 0.123456789
        literal = self.rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1e309"])
        raw = orjson.dumps(doc).replace(b"0.123456789", literal, 1)
        return self.message(kind, raw, "NaN/inf/1e400 as JSON numbers", INVALID_JSON)

    def beyond_float_feature(self) -> Bad:
        doc = self.template("features")
        doc["features"]["amount"] = 0.987654321
        raw = orjson.dumps(doc).replace(b"0.987654321", self.rng.choice([b"1e400", b"-2e308"]), 1)
        return self.message("features", raw, "number beyond float range", INVALID_JSON)

    def many_features(self) -> Bad:
        doc = self.template("features")
        doc["features"] = {f"f{i}": float(i) for i in range(10_000)}
        return self.message("features", orjson.dumps(doc), "10,000 features", SCHEMA)

    def deep(self) -> Bad:
        doc = self.template("features")
        depth = self.rng.choice([40, 200, 3000])
        doc["features"]["nested"] = 0.55555
        raw = orjson.dumps(doc).replace(b"0.55555", b"[" * depth + b"1" + b"]" * depth, 1)
        return self.message("features", raw, "deep nesting", SCHEMA if depth < 1000 else INVALID_JSON)

    def huge(self) -> Bad:
        doc = self.template("features")
        doc["features"]["blob"] = "x" * (5 * 1024 * 1024)
        return self.message("features", orjson.dumps(doc), "5 MB message", "too_large")

    def outcome_envelope(self) -> Bad:
        doc = {"records": [self.template("outcomes") for _ in range(2)]}
        return self.message("outcomes", orjson.dumps(doc), "envelope on outcomes", SCHEMA)

    def unknown_job(self, name: str) -> Bad:
        doc = {"job": name or "x", "jobRunId": f"other-{self.n}", "metadata": {}}
        return self.message("trigger", orjson.dumps(doc), "unknown job names", UNKNOWN_JOB)

    def bad_trigger(self) -> Bad:
        raw, reason = self.rng.choice([
            (b'{"job": "model-monitoring", "metadata": {"tenantIds": "acme"}}', SCHEMA),
            (b'{"job": "model-monitoring", "jobRunId": "has spaces"}', SCHEMA),
            (b'{"job": "model-monitoring", "metadata": {"windowEnd": "yesterday"}}', SCHEMA),
            (b'{"job": "model-monitoring", ', INVALID_JSON), (b"\xff\xfe", INVALID_UTF8)])
        return self.message("trigger", raw, "malformed triggers", reason)

    def too_late(self) -> Bad:
        """Older than the retention (predictions) or the join TTL (outcomes) behind what the
        partition has seen: sent at the end of the log."""
        kind = self.kind()
        doc = self.template(kind)
        doc["timestamp"] = self.rng.choice(["2000-01-01T00:00:00Z", 946_684_800_000])
        return Bad(kind, self.key(), orjson.dumps(doc), "too late", {-1: "too_late"}, late=True)

    # hypothesis-drawn
    def mutated(self, kind: str, mutation: tuple[str, Any]) -> Bad:
        field, value = mutation
        doc = self.template(kind)
        doc[field] = value
        return self.message(kind, dumps(doc), "wrong types (hypothesis)", SCHEMA)

    def missing(self, kind: str, fields: set[str]) -> Bad:
        doc = {k: v for k, v in self.template(kind).items() if k not in fields}
        return self.message(kind, dumps(doc), "missing fields (hypothesis)", SCHEMA)

    def arbitrary(self, value: Any) -> Bad:
        return self.message(self.kind(), dumps(value), "arbitrary JSON (hypothesis)", SCHEMA)

    def mixed_envelope(self, bad_records: list[dict[str, Any]], good: int) -> Bad:
        records: list[Any] = []
        reasons: dict[int, str] = {}
        for i in range(good + len(bad_records)):
            if bad_records and (i % 2 == 1 or len(records) >= good):
                reasons[len(records)] = SCHEMA
                records.append(bad_records.pop())
            else:
                doc = self.template("features")
                doc["predictionId"] = f"env-good-{self.n}-{i}"
                records.append(doc)
        good_count = len(records) - len(reasons)
        return Bad("features", self.key("env"), dumps({"records": records}),
                   "envelopes mixing good and bad (hypothesis)", reasons, good_count)


def bad_messages(total: int, rng: random.Random, features: list[dict[str, Any]],
                 outcomes: list[dict[str, Any]], at: int) -> list[Bad]:
    """About `total` bad messages and records: a third hand-made, the rest hypothesis-drawn."""
    f = Factory(rng, features, outcomes)
    out: list[Bad] = [f.huge()]
    out += [f.many_features() for _ in range(max(2, total // 2000))]
    out += [f.too_late() for _ in range(max(8, total // 100))]
    hand: list[Callable[[], Bad]] = [f.invalid_utf8, f.truncated, f.nan_inf_string, f.nan_inf_literal,
                                     f.beyond_float_feature, f.deep, f.outcome_envelope, f.bad_trigger]
    out += [hand[i % len(hand)]() for i in range(total // 3)]
    share = total // 12
    names = draw(st.text(min_size=1, max_size=40).filter(lambda s: s != "model-monitoring"), share // 2, at)
    out += [f.unknown_job(name) for name in names]
    out += [f.mutated("features", m) for m in draw(wrong_types(FEATURE_FIELDS + ("segment",)), share * 2, at + 1)]
    out += [f.mutated("outcomes", m) for m in draw(wrong_types(OUTCOME_FIELDS), share * 2, at + 2)]
    out += [f.missing("features", set(m)) for m in draw(st.sets(st.sampled_from(FEATURE_FIELDS), min_size=1), share, at + 3)]
    out += [f.missing("outcomes", set(m)) for m in draw(st.sets(st.sampled_from(OUTCOME_FIELDS), min_size=1), share, at + 4)]
    out += [f.arbitrary(v) for v in draw(JSON_VALUES, share, at + 5)]
    # envelopes: hypothesis-mutated records between good ones
    in_envelopes = max(0, total - sum(len(b.reasons) for b in out if not b.late))
    mutations = draw(wrong_types(FEATURE_FIELDS), in_envelopes, at + 6)
    records = []
    for field, value in mutations:
        doc = f.template("features")
        doc[field] = value
        records.append(doc)
    while records:
        size = rng.randint(1, 6)
        out.append(f.mixed_envelope([records.pop() for _ in range(min(size, len(records)))], rng.randint(1, 6)))
    return out
