"""The offline fold the stream must equal: one pass over the same input log, in produce order,
with the contract's rules (first prediction and first outcome per predictionId count; malformed
messages are not counted), summed over partitions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from model_monitoring.commands.harness import read_topic
from model_monitoring.commands.simulate import Message
from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.schemas.rejection import MessageRejected
from model_monitoring.schemas.validation import Validators, decode_json, split_envelope
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.error_sums import PerformanceSums
from model_monitoring.tables.histogram import count_batch
from model_monitoring.tables.ingest_partials import names_only
from model_monitoring.tables.keys import PartialKey, is_partial_key
from model_monitoring.tables.partial import PartialState
from model_monitoring.tables.record_state import Scored

GroupKey = tuple[str, str, str, str, int]  # tenant, model, version, segment, day
ViewKey = tuple[str, str, str, str]  # tenant, model, version, segment


@dataclass
class Fold:
    states: dict[GroupKey, PartialState] = field(default_factory=dict)
    malformed: int = 0           # messages (or envelope records) that must reach a DLQ
    # every counted prediction with its joined outcome and the outcome's time: what the
    # outcome clock (arrival view, calibration, label health) is computed from
    scored: dict[ViewKey, list[Scored]] = field(default_factory=dict)

    def comparable(self) -> dict[GroupKey, tuple[Any, Any]]:
        return {k: (v.histogram.to_json(), v.performance.to_json()) for k, v in self.states.items()}


def offline_fold(messages: Iterable[Message], baselines: Mapping[tuple[str, str], Baseline],
                 bucket_ms: int = 86_400_000, max_bytes: int = 4 << 20) -> Fold:
    validators = Validators()
    predictions: dict[str, InferenceRecord] = {}
    outcomes: dict[str, OutcomeRecord] = {}
    fold = Fold()
    for m in messages:
        try:
            obj = decode_json(m.value, max_bytes)
            items = split_envelope(obj) if m.kind == "features" else [obj]
        except MessageRejected:
            fold.malformed += 1
            continue
        for item in items:
            try:
                validators.validate(m.kind, item)
            except MessageRejected:
                fold.malformed += 1
                continue
            if m.kind == "features":
                rec = InferenceRecord.from_dict(item)  # type: ignore[arg-type]
                predictions.setdefault(rec.prediction_id, rec)
            else:
                outcome = OutcomeRecord.from_dict(item)  # type: ignore[arg-type]
                outcomes.setdefault(outcome.prediction_id, outcome)
    features: dict[GroupKey, list[Mapping[str, object]]] = defaultdict(list)
    pairs: dict[GroupKey, list[tuple[float, float]]] = defaultdict(list)
    for pid, rec in predictions.items():
        key = (rec.tenant_id, rec.model_id, rec.model_version, rec.segment or "",
               rec.timestamp_ms // bucket_ms)
        features[key].append(rec.features)
        out = outcomes.get(pid)
        joined = out is not None and (out.tenant_id, out.model_id) == (rec.tenant_id, rec.model_id)
        if out is not None and joined:
            pairs[key].append((rec.prediction, out.outcome))
        fold.scored.setdefault(key[:4], []).append(Scored(
            rec.timestamp_ms, rec.prediction, rec.features, out.outcome if out is not None and joined else None,
            out.timestamp_ms if out is not None and joined else None))
    for key, feats in features.items():
        baseline = baselines.get((key[1], key[2]))
        hist = count_batch(baseline, feats) if baseline is not None else names_only(feats)
        perf = PerformanceSums.empty()
        if pairs.get(key):
            p, y = zip(*pairs[key], strict=False)
            perf = perf.update_many(list(p), list(y))
        fold.states[key] = PartialState(hist, perf)
    return fold


async def changelog_table(bootstrap: str, topic: str, timeout: float = 120.0,
                          isolation_level: str = "read_uncommitted") -> dict[bytes, bytes]:
    """A changelog read to its end offset as a table: the last value per key, tombstones removing
    the key. `timeout` only bounds a read that cannot reach the end. An exactly-once worker's
    changelog is read `read_committed`, as its own recovery reads it."""
    table: dict[bytes, bytes] = {}
    for rec in await read_topic(bootstrap, topic, timeout=timeout, isolation_level=isolation_level):
        if rec.value is None:
            table.pop(rec.key, None)
        else:
            table[rec.key] = rec.value
    return table


def stream_state(changelog: Mapping[bytes, bytes]) -> Fold:
    """The partials changelog (last value per key) summed over partitions."""
    fold = Fold()
    for raw_key, raw_value in changelog.items():
        if not is_partial_key(raw_key):
            continue
        k = PartialKey.decode(raw_key)
        key = (k.tenant_id, k.model_id, k.model_version, k.segment, k.day)
        state = PartialState.from_bytes(raw_value)
        state = PartialState(state.histogram, state.performance)
        fold.states[key] = fold.states[key].merge(state) if key in fold.states else state
    return fold


def dlq_positions(records: Iterable[Any]) -> set[tuple[str, int, int, int]]:
    """Distinct (source topic, partition, offset, index) named by dead letters."""
    out = set()
    for rec in records:
        h = {k: v.decode() for k, v in rec.headers}
        out.add((h["source.topic"], int(h["source.partition"]), int(h["source.offset"]),
                 int(h.get("source.index", "-1"))))
    return out
