"""Every table key, encoded and decoded here and nowhere else.

A key starts with the source partition it belongs to (`streams/partitioned.py` files it under
that changelog partition), then its fields, '|'-separated. Fields are escaped ('%' -> '%25',
'|' -> '%7C'), so a field may hold any text and a key is told apart by its shape, not by
counting separators in free text. Tables and their keys:

| table        | key                                   | type            |
|--------------|---------------------------------------|-----------------|
| partials     | b"p|tenant|model|version|segment|day" | `PartialKey`    |
| partials     | b"p|tenant|model|version|segment|day|a" | `ArrivalKey`  |
| partials     | b"p|~meta"                            | `MetaKey`       |
| join_buffer  | b"p|predictionId" (the previous release's; migrated) | `JoinKey` |
| join_log     | b"p|~b|seq" (seq: 16 digits)          | `JoinBatchKey`  |
| (join index) | b"p|predictionId" (local RocksDB, not a table) | `JoinKey` |
| baselines    | b"0|{tenant or *}:model:version"      | `BaselineKey`   |
| job_runs     | b"p|jobRunId"                         | `RunKey`        |
| job_runs     | b"p|jobRunId|r|reportingPartition"    | `ReportKey`     |
| job_runs     | b"p|jobRunId|d|tenant:model"          | `EvaluatedKey`  |
| evaluations  | b"p|jobRunId|tenant:model"            | `EvaluationKey` |
| evaluations  | b"p|jobRunId|tenant:model|part|source" | `EvaluationPartKey` |
| evaluations  | b"p|jobRunId|~|gather"                | `GatherKey`     |
| evaluations  | b"p|jobRunId|~|chunk|source|index"    | `PartsChunkKey` |
| incidents    | b"p|tenant:model"                     | `IncidentBookKey` |
| detect_buckets | b"p|tenant:model" (p: source partition) | `IncidentBookKey` (same shape) |
| detectors    | b"p|tenant:model"                     | `IncidentBookKey` (same shape) |
| run_status   | b"0|jobRunId"                         | `RunStatusKey`  |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

META = "~meta"
ARRIVAL = "a"
SEP = "|"


def escape(field_value: str) -> str:
    return field_value.replace("%", "%25").replace("|", "%7C")


def unescape(field_value: str) -> str:
    return field_value.replace("%7C", "|").replace("%25", "%")


def _encode(partition: int, *fields: str) -> bytes:
    return SEP.join((str(partition), *map(escape, fields))).encode()


def join_key_bytes(partition: int, prediction_id: str) -> bytes:
    """`JoinKey(partition, prediction_id).encode()` without the object: one per record on the
    ingest path (`_encode`'s format, for one field)."""
    if "%" in prediction_id or SEP in prediction_id:
        prediction_id = escape(prediction_id)
    return f"{partition}{SEP}{prediction_id}".encode()


def _fields(raw: bytes) -> tuple[int, list[str]]:
    head, *rest = raw.decode().split(SEP)
    if not head.isdigit():
        raise KeyError(f"table key {raw[:80]!r} does not start with its partition")
    return int(head), [unescape(f) for f in rest]


def partition_of(raw: bytes) -> int:
    """The partition a table key belongs to (the digits before the first '|')."""
    head, sep, _ = raw.partition(SEP.encode())
    if not sep or not head.isdigit():
        raise KeyError(f"table key {raw[:80]!r} does not start with its partition")
    return int(head)


def partition_prefix(partition: int) -> bytes:
    """Every key of one partition starts with this."""
    return f"{partition}{SEP}".encode()


# -- partials ----------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class _DayKey:
    """(partition, tenant, model, version, segment, day), encoded with the class's TAG fields
    after the day: what the partials table keys its per-day sums by."""

    TAG: ClassVar[tuple[str, ...]] = ()
    KIND: ClassVar[str] = ""

    partition: int
    tenant_id: str
    model_id: str
    model_version: str
    segment: str
    day: int

    def encode(self) -> bytes:
        return _encode(self.partition, self.tenant_id, self.model_id, self.model_version,
                       self.segment, str(self.day), *self.TAG)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        partition, fields = _fields(raw)
        if len(fields) != 5 + len(cls.TAG) or tuple(fields[5:]) != cls.TAG:
            raise KeyError(f"not {cls.KIND} key: {raw[:80]!r}")
        tenant, model, version, segment, day = fields[:5]
        return cls(partition, tenant, model, version, segment, int(day))

    @property
    def model_key(self) -> str:
        """The (tenant, model) unit the weekly run evaluates and keys its events by."""
        return f"{self.tenant_id}:{self.model_id}"


@dataclass(frozen=True, order=True)
class PartialKey(_DayKey):
    """What one source partition counted for one (tenant, model, version, segment, day)."""

    KIND: ClassVar[str] = "a partial"


@dataclass(frozen=True, order=True)
class ArrivalKey(_DayKey):
    """What one source partition counted for the pairs of one (tenant, model, version, segment)
    completed on one day (the later of prediction and outcome time): the outcome-arrival view."""

    TAG: ClassVar[tuple[str, ...]] = (ARRIVAL,)
    KIND: ClassVar[str] = "an arrival"


@dataclass(frozen=True, order=True)
class MetaKey:
    """Per-partition bookkeeping in the partials table: the event-time high-water marks."""

    partition: int

    def encode(self) -> bytes:
        return f"{self.partition}{SEP}{META}".encode()

    @classmethod
    def decode(cls, raw: bytes) -> MetaKey:
        partition, fields = _fields(raw)
        if fields != [META]:
            raise KeyError(f"not a meta key: {raw[:80]!r}")
        return cls(partition)


def decode_partials_key(raw: bytes) -> PartialKey | ArrivalKey | MetaKey:
    partition, fields = _fields(raw)
    if fields == [META]:
        return MetaKey(partition)
    if is_arrival_key(raw):
        return ArrivalKey.decode(raw)
    return PartialKey.decode(raw)


def is_partial_key(raw: bytes) -> bool:
    """A prediction day's partial key (not an arrival day's, not the partition's meta key)."""
    return not raw.endswith(f"{SEP}{META}".encode()) and not is_arrival_key(raw)


def is_arrival_key(raw: bytes) -> bool:
    """An arrival day's partial key (its day is digits, so no other key ends this way)."""
    return raw.endswith(f"{SEP}{ARRIVAL}".encode())


def is_meta_key(raw: bytes) -> bool:
    return raw.endswith(f"{SEP}{META}".encode())


# -- join buffer -------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class JoinKey:
    partition: int
    prediction_id: str

    def encode(self) -> bytes:
        return join_key_bytes(self.partition, self.prediction_id)

    @classmethod
    def decode(cls, raw: bytes) -> JoinKey:
        partition, fields = _fields(raw)
        if len(fields) != 1:
            raise KeyError(f"not a join key: {raw[:80]!r}")
        return cls(partition, fields[0])


@dataclass(frozen=True, order=True)
class JoinBatchKey:
    """One batch of the join log (`tables/join_log.py`): a partition's join entries written by
    one fold. `seq` grows with every batch the partition writes, and its fixed width makes the
    store's key order the write order."""

    TAG: ClassVar[str] = "~b"

    partition: int
    seq: int

    def encode(self) -> bytes:
        return _encode(self.partition, self.TAG, f"{self.seq:016d}")

    @classmethod
    def decode(cls, raw: bytes) -> JoinBatchKey:
        partition, fields = _fields(raw)
        if len(fields) != 2 or fields[0] != cls.TAG or not fields[1].isdigit():
            raise KeyError(f"not a join batch key: {raw[:80]!r}")
        return cls(partition, int(fields[1]))


# -- baselines (a GlobalTable of one partition) ------------------------------------------------

@dataclass(frozen=True, order=True)
class BaselineKey:
    """Partition 0, then the contract key `{tenant or *}:{model}:{version}`."""

    tenant_id: str | None
    model_id: str
    model_version: str

    @property
    def contract_key(self) -> str:
        return f"{self.tenant_id or '*'}:{self.model_id}:{self.model_version}"

    def encode(self) -> bytes:
        return f"0{SEP}{self.contract_key}".encode()

    @classmethod
    def from_contract_key(cls, text: str) -> BaselineKey:
        tenant, model, version = text.split(":", 2)
        return cls(None if tenant == "*" else tenant, model, version)

    @classmethod
    def decode(cls, raw: bytes) -> BaselineKey:
        head, _, rest = raw.decode().partition(SEP)
        if head != "0":
            raise KeyError(f"not a baseline key: {raw[:80]!r}")
        return cls.from_contract_key(rest)


# -- the weekly run's tables -------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class RunKey:
    """A run, held by the job tracker of the runs-topic partition its id hashes to."""

    partition: int
    job_run_id: str

    def encode(self) -> bytes:
        return _encode(self.partition, self.job_run_id)


@dataclass(frozen=True, order=True)
class ReportKey:
    """One partition's report of the (tenant, model) keys it holds data for."""

    partition: int
    job_run_id: str
    reporting_partition: int

    def encode(self) -> bytes:
        return _encode(self.partition, self.job_run_id, "r", str(self.reporting_partition))


@dataclass(frozen=True, order=True)
class EvaluatedKey:
    """One (tenant, model) key of a run, evaluated: its counts."""

    partition: int
    job_run_id: str
    model_key: str

    def encode(self) -> bytes:
        return _encode(self.partition, self.job_run_id, "d", self.model_key)


def decode_job_runs_key(raw: bytes) -> RunKey | ReportKey | EvaluatedKey:
    partition, fields = _fields(raw)
    if len(fields) == 1:
        return RunKey(partition, fields[0])
    if len(fields) == 3 and fields[1] == "r":
        return ReportKey(partition, fields[0], int(fields[2]))
    if len(fields) == 3 and fields[1] == "d":
        return EvaluatedKey(partition, fields[0], fields[2])
    raise KeyError(f"not a job_runs key: {raw[:80]!r}")


@dataclass(frozen=True, order=True)
class EvaluationKey:
    """The evaluator's state of one (jobRunId, tenant:model)."""

    partition: int
    job_run_id: str
    model_key: str

    def encode(self) -> bytes:
        return _encode(self.partition, self.job_run_id, self.model_key)

    @classmethod
    def decode(cls, raw: bytes) -> EvaluationKey:
        partition, fields = _fields(raw)
        if len(fields) != 2:
            raise KeyError(f"not an evaluation key: {raw[:80]!r}")
        return cls(partition, fields[0], fields[1])


@dataclass(frozen=True, order=True)
class EvaluationPartKey:
    """One source partition's part of an evaluation, kept beside it until it is evaluated."""

    partition: int
    job_run_id: str
    model_key: str
    source: int
    TAG: ClassVar[str] = "part"

    def encode(self) -> bytes:
        return _encode(self.partition, self.job_run_id, self.model_key, self.TAG, str(self.source))

    @classmethod
    def decode(cls, raw: bytes) -> EvaluationPartKey:
        partition, fields = _fields(raw)
        if len(fields) != 4 or fields[2] != cls.TAG:
            raise KeyError(f"not an evaluation part key: {raw[:80]!r}")
        return cls(partition, fields[0], fields[1], int(fields[3]))


@dataclass(frozen=True, order=True)
class GatherKey:
    """What one evaluator partition has gathered of one run's parts chunks (`PartsGather`)."""

    partition: int
    job_run_id: str
    TAG: ClassVar[tuple[str, str]] = ("~", "gather")

    def encode(self) -> bytes:
        return _encode(self.partition, self.job_run_id, *self.TAG)

    @classmethod
    def decode(cls, raw: bytes) -> GatherKey:
        partition, fields = _fields(raw)
        if len(fields) != 3 or tuple(fields[1:]) != cls.TAG:
            raise KeyError(f"not a gather key: {raw[:80]!r}")
        return cls(partition, fields[0])


@dataclass(frozen=True, order=True)
class PartsChunkKey:
    """One chunk of one source partition's parts for this evaluator partition (a `SnapshotParts`
    message as it came), kept until every key in it is evaluated."""

    partition: int
    job_run_id: str
    source: int
    index: int
    TAG: ClassVar[tuple[str, str]] = ("~", "chunk")

    def encode(self) -> bytes:
        return _encode(self.partition, self.job_run_id, *self.TAG, str(self.source), str(self.index))

    @classmethod
    def decode(cls, raw: bytes) -> PartsChunkKey:
        partition, fields = _fields(raw)
        if len(fields) != 5 or tuple(fields[1:3]) != cls.TAG or not fields[3].isdigit() or not fields[4].isdigit():
            raise KeyError(f"not a parts chunk key: {raw[:80]!r}")
        return cls(partition, fields[0], int(fields[3]), int(fields[4]))


EvaluationsKey = EvaluationKey | EvaluationPartKey | GatherKey | PartsChunkKey


def decode_evaluations_key(raw: bytes) -> EvaluationsKey:
    partition, fields = _fields(raw)
    if len(fields) == 2:
        return EvaluationKey(partition, fields[0], fields[1])
    if len(fields) == 3:
        return GatherKey.decode(raw)
    if len(fields) == 5:
        return PartsChunkKey.decode(raw)
    return EvaluationPartKey.decode(raw)


@dataclass(frozen=True, order=True)
class IncidentBookKey:
    """The incidents of one (tenant:model), held by the evaluator of its snapshot-parts partition."""

    partition: int
    model_key: str

    def encode(self) -> bytes:
        return _encode(self.partition, self.model_key)

    @classmethod
    def decode(cls, raw: bytes) -> IncidentBookKey:
        partition, fields = _fields(raw)
        if len(fields) != 1:
            raise KeyError(f"not an incidents key: {raw[:80]!r}")
        return cls(partition, fields[0])


@dataclass(frozen=True, order=True)
class RunStatusKey:
    """A run's summary, in a GlobalTable of one partition (any worker answers GET)."""

    job_run_id: str

    def encode(self) -> bytes:
        return _encode(0, self.job_run_id)

    @classmethod
    def decode(cls, raw: bytes) -> RunStatusKey:
        partition, fields = _fields(raw)
        if partition != 0 or len(fields) != 1:
            raise KeyError(f"not a run status key: {raw[:80]!r}")
        return cls(fields[0])


TableKey = (PartialKey | ArrivalKey | MetaKey | JoinKey | BaselineKey | RunKey | ReportKey | EvaluatedKey
            | EvaluationKey | EvaluationPartKey | GatherKey | PartsChunkKey | IncidentBookKey | RunStatusKey)
