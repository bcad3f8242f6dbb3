"""Which baseline a (tenant, model, version) is judged against: the tenant's own first, then the
`*` one; each stored value parsed once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from model_monitoring.schemas.validation import decode_json
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.keys import BaselineKey


class BytesLookup(Protocol):
    def get(self, key: bytes, /) -> bytes | None: ...


class BaselineCache:
    """A parsed view of the `baselines` table (values stored only after validation)."""

    def __init__(self, table: BytesLookup) -> None:
        self.table = table
        self._parsed: dict[bytes, tuple[bytes, Baseline]] = {}

    def lookup(self, tenant: str, model: str, version: str) -> Baseline | None:
        for key in (BaselineKey(tenant, model, version).encode(),
                    BaselineKey(None, model, version).encode()):
            raw = self.table.get(key)
            if raw is None:
                continue
            cached = self._parsed.get(key)
            if cached is not None and cached[0] == raw:
                return cached[1]
            baseline = Baseline.from_dict(decode_json(raw, 1 << 30))  # type: ignore[arg-type]
            self._parsed[key] = (raw, baseline)
            return baseline
        return None

    def once(self) -> Callable[[str, str, str], Baseline | None]:
        """`lookup`, each (tenant, model, version) read once: for one pass in which the table
        cannot change (a fold: no await in it). `lookup` reads the stored value to see whether it
        changed — a copy of the whole baseline out of the store, tens of µs — and a fold asks
        per partial key, twice."""
        seen: dict[tuple[str, str, str], Baseline | None] = {}

        def lookup_once(tenant: str, model: str, version: str) -> Baseline | None:
            key = (tenant, model, version)
            if key not in seen:
                seen[key] = self.lookup(tenant, model, version)
            return seen[key]

        return lookup_once
