"""The input topics' fast path: one msgspec pass from bytes to typed records, in C.

The full way (`decode_json`, `split_envelope`, `Validators.validate`, `from_dict`) parses with
orjson, walks the document again to validate it against its JSON Schema (fastjsonschema), then
builds the record: about half of a worker's CPU per record. Here msgspec decodes a message
straight into typed structs whose constraints mirror the schemas (`ml.inference.features.json`,
`ml.outcomes.json`), and the records are built from them.

The JSON Schemas stay the contract and the judge. The fast path answers only for a message it
accepts whole (a record, or an envelope and every record in it); anything else (one bad record
in an envelope, an unknown shape, a number orjson refuses) gets `None`, and the caller takes the
full way for that message, which gives every rejection its DLQ reason and detail exactly as
before. So the fast path may refuse more than the schema does, never less, and what it accepts
it decodes to the same records: `tests/unit/test_fast_decode.py` checks both with hypothesis,
over generated documents and raw JSON text (duplicate keys, escapes, big numbers, surrogates).

What msgspec does not decode it does not check as orjson does, so these take the full way too:
a field the schemas do not name (allowed there; msgspec would skip its value unread: invalid
UTF-8, a lone surrogate, a number orjson refuses), and bytes that are not UTF-8 anywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from model_monitoring.schemas.models import InferenceRecord, OutcomeRecord
from model_monitoring.schemas.rejection import MessageRejected
from model_monitoring.schemas.timestamps import parse_timestamp_ms

_MAX_DOUBLE = 1.7976931348623157e308
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
# finite: orjson refuses numbers that overflow a double, which msgspec would read as infinity
_Number = Annotated[float, msgspec.Meta(ge=-_MAX_DOUBLE, le=_MAX_DOUBLE)]
# 64-bit signed integers: orjson reads up to 2**64 - 1 and refuses larger ones; the few between
# 2**63 and 2**64 take the full way (msgspec bounds stop at int64)
_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
# the schema's timestamp: epoch milliseconds in range, or a text that `parse_timestamp_ms` reads
# when the record is built (the schema's pattern as a full match, and the calendar, as `from_dict`
# does; a text it refuses sends the message the full way). Not a msgspec `pattern`: msgspec runs
# that through Python's `re` per record, ~1.2 µs, and the parser matches the text again anyway.
_Timestamp = Annotated[int, msgspec.Meta(ge=0, le=253402300799999)] | str
_FeatureName = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_FeatureValue = _Int | _Number | Annotated[str, msgspec.Meta(max_length=1024)] | bool | None


class _Inference(msgspec.Struct, rename="camel", gc=False, forbid_unknown_fields=True):
    prediction_id: _Id
    tenant_id: _Id
    model_id: _Id
    model_version: _Id
    timestamp: _Timestamp
    prediction: _Int | _Number  # an integer literal read as orjson reads it (64 bits)
    features: dict[_FeatureName, _FeatureValue]
    segment: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class _Outcome(msgspec.Struct, rename="camel", gc=False, forbid_unknown_fields=True):
    prediction_id: _Id
    tenant_id: _Id
    model_id: _Id
    outcome: _Int | _Number
    timestamp: _Timestamp


class _Envelope(msgspec.Struct, rename="camel", gc=False, forbid_unknown_fields=True):
    records: list[msgspec.Raw]
    # an object with a predictionId is a record, never an envelope (`split_envelope`)
    prediction_id: Any = msgspec.UNSET


class _InferenceEnvelope(msgspec.Struct, rename="camel", gc=False, forbid_unknown_fields=True):
    """An envelope decoded with its records in one C pass (~0.9 µs a record less than a `Raw`
    each and a decode per `Raw`); their own JSON is split out only when asked (`Decoded.raws`)."""

    records: list[_Inference]
    prediction_id: Any = msgspec.UNSET


_RAW_ENVELOPE = msgspec.json.Decoder(_Envelope)


def _inference(s: _Inference) -> InferenceRecord:
    return InferenceRecord(s.prediction_id, s.tenant_id, s.model_id, s.model_version,
                           parse_timestamp_ms(s.timestamp), float(s.prediction), s.segment, s.features)


def _outcome(s: _Outcome) -> OutcomeRecord:
    return OutcomeRecord(s.prediction_id, s.tenant_id, s.model_id, float(s.outcome),
                         parse_timestamp_ms(s.timestamp))


class Decoded:
    """A message the fast path accepted: its records in order; `raws` holds an envelope's
    records as they came (None for a single record), split from the message when first read —
    only a record forwarded through the broker or dead-lettered needs its own JSON."""

    __slots__ = ("records", "enveloped", "_message", "_raws")

    def __init__(self, records: list[Any], message: bytes | None = None) -> None:
        """`message`: the envelope's bytes (None: a single record)."""
        self.records = records
        self.enveloped = message is not None
        self._message = message
        self._raws: list[msgspec.Raw] | None = None

    @property
    def raws(self) -> list[msgspec.Raw] | None:
        if self._message is None:
            return None
        if self._raws is None:  # it decoded as an envelope of these records: it splits the same
            self._raws = _RAW_ENVELOPE.decode(self._message).records
        return self._raws

    def raw(self, position: int) -> msgspec.Raw:
        """The own JSON of an envelope's record at `position`."""
        raws = self.raws
        if raws is None:
            raise ValueError("a single record has no envelope positions")
        return raws[position]


class FastDecoder:
    """The fast path of one input topic kind (`features`: records and envelopes; `outcomes`)."""

    def __init__(self, kind: str, max_features: int, max_bytes: int) -> None:
        if kind not in ("features", "outcomes"):
            raise ValueError(f"no fast path for {kind!r}")
        self.kind = kind
        self.max_features = max_features
        self.max_bytes = max_bytes  # a larger message takes the full way, which words `too_large`
        self._record: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
            _Inference if kind == "features" else _Outcome)
        self._envelope: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
            _InferenceEnvelope if kind == "features" else _Envelope)
        self._build: Callable[[Any], Any] = _inference if kind == "features" else _outcome

    def _one(self, raw: bytes | msgspec.Raw) -> Any:
        struct = self._record.decode(raw)
        if self.kind == "features" and len(struct.features) > self.max_features:
            raise MessageRejected("schema", "too many features")  # the full way words it
        return self._build(struct)

    def decode(self, raw: bytes | None) -> Decoded | None:
        """The message's records, or None: take the full way (it may still be valid)."""
        if not raw or len(raw) > self.max_bytes:
            return None
        if not raw.isascii():
            try:
                raw.decode("utf-8")  # msgspec does not check what it does not decode
            except UnicodeDecodeError:
                return None
        try:
            return Decoded([self._one(raw)])
        except (msgspec.DecodeError, MessageRejected):
            if self.kind != "features" or b'"records"' not in raw:
                return None
        try:
            envelope = self._envelope.decode(raw)
        except msgspec.DecodeError:
            return None
        if envelope.prediction_id is not msgspec.UNSET:
            return None
        structs, limit = envelope.records, self.max_features
        if any(len(struct.features) > limit for struct in structs):
            return None  # too many features: the full way words it
        try:
            return Decoded(list(map(_inference, structs)), raw)
        except MessageRejected:  # a timestamp text the parser refuses
            return None
