"""Reading the offline inputs: inference records (JSON Lines, envelopes too, or CSV) and outcomes.

Every record is checked on its own; the first bad one raises :class:`InputError` naming the file
and line, which the commands print as one line with exit code 2.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import orjson

from model_monitoring.schemas.rejection import MessageRejected
from model_monitoring.schemas.timestamps import parse_timestamp_ms
from model_monitoring.schemas.validation import split_envelope

RESERVED_COLUMNS = (
    "prediction", "outcome", "predictionId", "tenantId", "modelId", "modelVersion", "segment", "timestamp"
)
_ID_FIELDS = ("predictionId", "tenantId", "modelId", "modelVersion")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_SPECIAL_FLOATS = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf,
                   "infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf}


class InputError(Exception):
    """Unusable input: the file, the 1-based line (None for the whole file) and what is wrong."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        super().__init__(path, line, message)
        self.path, self.line, self.message = path, line, message

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


class Line(NamedTuple):
    """One record and the line it was read from."""

    number: int
    record: dict[str, object]


def read_inference_records(path: str, *, task: str | None = None) -> list[Line]:
    """Inference records of a ``.csv`` file, or else of a JSON Lines file (one record or envelope
    a line, optionally with ``outcome``); ``task`` adds the checks of classification (p and y)."""
    lines: list[Line] = []
    if Path(path).suffix.lower() == ".csv":
        for number, row in _csv_rows(path):
            try:
                lines.append(Line(number, _csv_record(row)))
            except ValueError as exc:
                raise InputError(path, number, str(exc)) from None
    else:
        for number, obj in _json_lines(path):
            try:
                items = split_envelope(obj)
            except MessageRejected as exc:
                raise InputError(path, number, exc.detail) from None
            enveloped = len(items) != 1 or items[0] is not obj
            for index, item in enumerate(items):
                try:
                    lines.append(Line(number, _validated_record(item)))
                except ValueError as exc:
                    prefix = f"records[{index}]: " if enveloped else ""
                    raise InputError(path, number, f"{prefix}{exc}") from None
    for number, record in lines:
        try:
            _check_task(record, task)
        except ValueError as exc:
            raise InputError(path, number, str(exc)) from None
    return lines


def read_outcomes(path: str, *, task: str | None = None) -> list[Line]:
    """Outcome records (``predictionId``, ``outcome``, optional ``tenantId``/``modelId``/``timestamp``)
    of a JSON Lines file, or of a ``.csv`` file with those columns."""
    rows: Iterator[tuple[int, object]]
    if Path(path).suffix.lower() == ".csv":
        rows = ((n, {k: _csv_cell(v) if k == "outcome" else (v or None) for k, v in row.items()})
                for n, row in _csv_rows(path))
    else:
        rows = _json_lines(path)
    lines = []
    for number, obj in rows:
        try:
            if not isinstance(obj, dict):
                raise ValueError("an outcome record must be a JSON object")
            _check_ids(obj)
            if not isinstance(obj.get("predictionId"), str):
                raise ValueError("predictionId: required, a string")
            if _number(obj.get("outcome")) is None:
                raise ValueError("outcome: required, a finite number")
            _check_timestamp(obj)
            _check_task({"outcome": obj["outcome"]}, task)
        except ValueError as exc:
            raise InputError(path, number, str(exc)) from None
        lines.append(Line(number, obj))
    return lines


def _validated_record(obj: object) -> dict[str, object]:
    """A CONTRACT inference record (ids, segment, timestamp optional offline), or ValueError."""
    if not isinstance(obj, dict):
        raise ValueError("an inference record must be a JSON object")
    features = obj.get("features")
    if not isinstance(features, dict):
        raise ValueError("features: required, a JSON object")
    for name, value in features.items():
        if value is not None and not isinstance(value, (str, bool, int, float)):
            raise ValueError(f"features.{name}: must be a number, a string, a boolean or null")
    if _number(obj.get("prediction")) is None:
        raise ValueError("prediction: required, a finite number")
    if obj.get("outcome") is not None and _number(obj["outcome"]) is None:
        raise ValueError("outcome: must be a finite number or null")
    _check_ids(obj)
    if obj.get("segment") is not None and not isinstance(obj["segment"], str):
        raise ValueError("segment: must be a string or null")
    _check_timestamp(obj)
    return obj


def _check_ids(obj: Mapping[str, object]) -> None:
    for key in _ID_FIELDS:
        value = obj.get(key)
        if value is not None and not (isinstance(value, str) and value):
            raise ValueError(f"{key}: must be a non-empty string")


def _check_timestamp(obj: Mapping[str, object]) -> None:
    value = obj.get("timestamp")
    if value is not None:
        try:
            parse_timestamp_ms(value)  # type: ignore[arg-type]
        except MessageRejected as exc:
            raise ValueError(exc.detail) from None


def _check_task(record: Mapping[str, object], task: str | None) -> None:
    if task != "classification":
        return
    prediction, outcome = record.get("prediction"), record.get("outcome")
    if prediction is not None and not 0.0 <= float(prediction) <= 1.0:  # type: ignore[arg-type]
        raise ValueError(f"prediction: must be a probability in [0, 1] for classification, got {prediction!r}")
    if outcome is not None and outcome not in (0, 1):
        raise ValueError(f"outcome: must be 0 or 1 for classification, got {outcome!r}")


def _number(value: object) -> float | None:
    """A finite number (not a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _json_lines(path: str) -> Iterator[tuple[int, object]]:
    for number, raw in enumerate(_read_bytes(path).split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            yield number, orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InputError(path, number, f"invalid JSON: {exc}") from None


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror or exc}") from None


def _csv_rows(path: str) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        text = _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = _read_bytes(path)[: exc.start].count(b"\n") + 1
        raise InputError(path, line, f"not UTF-8: {exc.reason}") from None
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(path, None, "empty CSV file") from None
    if len(set(header)) != len(header) or not all(header):
        raise InputError(path, 1, "the header needs distinct, non-empty column names")
    try:
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(path, reader.line_num, f"{len(row)} cells for {len(header)} columns")
            yield reader.line_num, dict(zip(header, row, strict=True))
    except csv.Error as exc:
        raise InputError(path, reader.line_num, f"malformed CSV: {exc}") from None


def _csv_record(row: Mapping[str, str]) -> dict[str, object]:
    """A CSV row as an inference record: reserved columns, all others are features."""
    features = {k: _csv_cell(v) for k, v in row.items() if k not in RESERVED_COLUMNS}
    record: dict[str, object] = {"features": features}
    for key in ("predictionId", "tenantId", "modelId", "modelVersion", "segment"):
        if row.get(key):
            record[key] = row[key]
    if row.get("timestamp"):
        stamp = row["timestamp"].strip()
        record["timestamp"] = int(stamp) if _INTEGER.fullmatch(stamp) else stamp
    record["prediction"] = _csv_cell(row.get("prediction", ""))
    record["outcome"] = _csv_cell(row.get("outcome", ""))
    return _validated_record(record)


def _csv_cell(text: str) -> object:
    """An empty cell is missing; a number reads as a number; anything else is a string."""
    cell = text.strip()
    if not cell:
        return None
    if _INTEGER.fullmatch(cell):
        return int(cell)
    if _DECIMAL.fullmatch(cell):
        return float(cell)
    special = _SPECIAL_FLOATS.get(cell.lower())
    return special if special is not None else text
