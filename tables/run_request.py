"""The run route's request and answer, pure: how long the caller lets us hold the request
(RFC 7240 `Prefer`), the run an `Idempotency-Key` names, and what a run's status answers.

The platform's batch-job worker sends a plain POST and reads `tenants`, `driftChecked` and
`performanceChecked` from the answer, so the default is synchronous: hold the request until
the run ends. `Prefer: respond-async` asks for 202 at once, `Prefer: wait=N` for another hold.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.tables.job_run import COUNT_FIELDS

MAX_WAIT_SECONDS = 300  # no request is held longer, whatever `Prefer: wait` or the setting say
MAX_IDEMPOTENCY_KEY = 255
RUN_FAILED_STATUS = 500  # the run failed on the service's side (its deadline passed); see README
_DELTA_SECONDS = re.compile(r"[0-9]{1,9}")
# a preference: token, optional `= value` (token or quoted string), then `;` parameters
_PREFERENCE = re.compile(r'\s*([^\s=;,]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^\s;,]*))?[^,]*')


@dataclass(frozen=True)
class Preferences:
    """What the caller's `Prefer` headers ask of the run route (RFC 7240 §4.1, §4.3)."""

    respond_async: bool = False
    wait_seconds: int | None = None  # `wait=N` as sent (delta-seconds), if any

    def hold_seconds(self, default: float) -> float:
        """How long to hold the request for the run's end: `wait=N` when given, else nothing
        for `respond-async`, else the configured default; never over MAX_WAIT_SECONDS."""
        if self.wait_seconds is not None:
            wanted: float = self.wait_seconds
        elif self.respond_async:
            wanted = 0.0
        else:
            wanted = default
        return max(0.0, min(float(wanted), float(MAX_WAIT_SECONDS)))

    def applied(self, answered_async: bool) -> str | None:
        """The `Preference-Applied` header: the preferences this answer honoured."""
        honoured = []
        if self.respond_async and answered_async:
            honoured.append("respond-async")
        if self.wait_seconds is not None and self.wait_seconds <= MAX_WAIT_SECONDS:
            honoured.append(f"wait={self.wait_seconds}")
        return ", ".join(honoured) or None


def parse_prefer(values: Iterable[str]) -> Preferences:
    """Every `Prefer` header of a request (several, or one comma-separated). Unknown or malformed
    preferences are ignored, as RFC 7240 asks; the first occurrence of a preference wins."""
    respond_async: bool | None = None
    wait: int | None = None
    seen: set[str] = set()
    for value in values:
        for match in _PREFERENCE.finditer(value):
            name = match.group(1).lower()
            raw = match.group(2)
            if raw is not None and raw.startswith('"'):
                raw = raw[1:-1]
            if name in seen:
                continue
            seen.add(name)
            if name == "respond-async":
                respond_async = True
            elif name == "wait" and raw is not None and _DELTA_SECONDS.fullmatch(raw):
                wait = int(raw)
    return Preferences(respond_async=bool(respond_async), wait_seconds=wait)


def check_idempotency_key(raw: str) -> str:
    """The key as sent (an RFC 8941 string's quotes removed): 1 to 255 printable ASCII
    characters. Raises ValueError."""
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise ValueError(f"Idempotency-Key must hold 1 to {MAX_IDEMPOTENCY_KEY} characters")
    if not all(" " <= c <= "~" for c in key):
        raise ValueError("Idempotency-Key must be printable ASCII")
    return key


def idempotent_job_run_id(key: str, subject: str | None, tenant_scope: Iterable[str] | None) -> str:
    """The jobRunId an Idempotency-Key names for one caller: the token's subject and tenant
    scope (None: every tenant) and the key, hashed. Deterministic, so a retry reaches the same run
    on any worker and after any restart, and two callers' keys never meet."""
    scope = sorted(tenant_scope) if tenant_scope is not None else None
    digest = hashlib.sha256(orjson.dumps([subject, scope, key])).hexdigest()[:32]
    return f"http-{digest}"


def same_tenants(summary: Mapping[str, Any], tenant_ids: list[str] | None) -> bool:
    """Does the run cover the tenants this request asks for (None: every tenant)?"""
    theirs = summary.get("tenantIds")
    if theirs is None or tenant_ids is None:
        return theirs is None and tenant_ids is None
    return set(theirs) == set(tenant_ids)


@dataclass(frozen=True)
class RunAnswer:
    status: int
    body: dict[str, Any]


def finished_answer(summary: Mapping[str, Any]) -> RunAnswer | None:
    """The answer a run's status gives once it has ended: 200 with the fields of its
    `workflow.job.completed`, or RUN_FAILED_STATUS with the reason of its `workflow.job.failed`;
    None while it runs."""
    status = summary.get("status")
    finished_ms = summary.get("finishedMs")
    if status == "completed" and isinstance(finished_ms, int):
        tenants = summary.get("tenants")
        if tenants is None:  # a run completed before `tenants` was kept: the tenants it asked for
            tenants = summary.get("tenantIds") or []
        body: dict[str, Any] = {"job": "model-monitoring", "jobRunId": summary["jobRunId"],
                                "tenants": list(tenants)}
        body.update({name: int(summary.get(name) or 0) for name in COUNT_FIELDS})
        body["durationMs"] = max(0, finished_ms - int(summary["startedMs"]))
        body["completedAt"] = format_timestamp(finished_ms)
        return RunAnswer(200, body)
    if status == "failed":
        failed_at = finished_ms if isinstance(finished_ms, int) else int(summary["startedMs"])
        return RunAnswer(RUN_FAILED_STATUS, {
            "error": "run_failed", "message": str(summary.get("error") or "the run failed"),
            "jobRunId": summary["jobRunId"], "failedAt": format_timestamp(failed_at)})
    return None
