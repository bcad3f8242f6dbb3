"""The run route and the run's status, for the platform's batch-job worker and operators.

`POST …/run` publishes the same trigger message as every other source (one path), then holds
the request until the run's `workflow.job.completed` (200, its fields) or `workflow.job.failed`
(500, its reason), or until the wait runs out (202 and the status route's Location). The run's
end is read from the `run_status` GlobalTable, which every worker keeps from its changelog, so
the wait ends whichever worker tracks the run. An `Idempotency-Key` names the run: the same key
from the same caller reaches the same jobRunId, whose second start the tracker ignores."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from faust.web import Request, Response, View

from model_monitoring.agents.run import publish_trigger
from model_monitoring.streams.app import Monitor
from model_monitoring.streams.auth import AuthError, ServicePrincipal, TokenVerifier
from model_monitoring.tables.keys import RunStatusKey
from model_monitoring.tables.run_request import (
    check_idempotency_key,
    finished_answer,
    idempotent_job_run_id,
    parse_prefer,
    same_tenants,
)

log = logging.getLogger("model_monitoring.web")
API = "/api/v1/ml/model-monitoring"
POLL_SECONDS = 0.2  # how often a held request reads the run's status

Refuse = Callable[[View, int, str, str], Response]


def parse_run_body(raw: bytes) -> list[str] | None:
    """The POST body: empty, or {"tenantIds"?: [non-empty strings]}. Raises ValueError."""
    if not raw.strip():
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(body) - {"tenantIds"}
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))[:200]}")
    tenants = body.get("tenantIds")
    if tenants is None:
        return None
    if (not isinstance(tenants, list) or not tenants or len(tenants) > 10_000
            or not all(isinstance(t, str) and 0 < len(t) <= 256 for t in tenants)):
        raise ValueError("tenantIds must be a non-empty list of tenant ids")
    return sorted(set(tenants))


def status_path(job_run_id: str) -> str:
    return f"{API}/runs/{job_run_id}"


def register(monitor: Monitor, verifier: TokenVerifier, refuse: Refuse) -> None:
    app, s = monitor.app, monitor.settings

    def run_summary(job_run_id: str) -> dict[str, Any] | None:
        raw = monitor.tables.run_status.get(RunStatusKey(job_run_id).encode())
        return orjson.loads(raw) if raw is not None else None

    async def held(job_run_id: str, seconds: float) -> dict[str, Any] | None:
        """The run's status once it has ended, or its last status when `seconds` pass first."""
        deadline = time.monotonic() + seconds
        while True:
            summary = run_summary(job_run_id)
            if summary is not None and finished_answer(summary) is not None:
                return summary
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return summary
            await asyncio.sleep(min(POLL_SECONDS, remaining))

    def key_reused(view: View) -> Response:
        return refuse(view, 422, "idempotency_key_reused",
                      "this Idempotency-Key names a run of other tenants; use a new key")

    @app.page(f"{API}/run")
    class RunJob(View):
        async def post(self, request: Request) -> Response:
            try:
                principal = verifier.verify(request.headers.get("Authorization"))
            except AuthError as exc:
                return refuse(self, exc.status, exc.code, exc.message)
            length = request.content_length  # type: ignore[attr-defined]  # aiohttp's, under faust's Request
            if length is not None and length > s.max_body_bytes:
                return refuse(self, 413, "body_too_large", f"the body may hold {s.max_body_bytes} bytes")
            raw = await request.read()
            if len(raw) > s.max_body_bytes:
                return refuse(self, 413, "body_too_large", f"the body may hold {s.max_body_bytes} bytes")
            try:
                requested = parse_run_body(raw)
            except ValueError as exc:
                return refuse(self, 400, "invalid_body", str(exc))
            try:
                tenants = principal.allow_tenants(requested)
            except AuthError as exc:
                return refuse(self, exc.status, exc.code, exc.message)
            job_run_id, error = self.job_run_id(request, principal)
            if error is not None:
                return refuse(self, 400, "invalid_idempotency_key", error)
            preferences = parse_prefer(request.headers.getall("Prefer", []))  # type: ignore[attr-defined]  # aiohttp's CIMultiDict
            known = run_summary(job_run_id)
            if known is not None and not same_tenants(known, tenants):
                return key_reused(self)
            if known is None:  # a retry of a run not yet tracked publishes again: the tracker ignores it
                await publish_trigger(monitor, job_run_id, tenants, "http")
            log.info("run requested over HTTP by %s: jobRunId=%s tenants=%s%s", principal.subject,
                     job_run_id, tenants if tenants is not None else "all",
                     " (a retry of a known run)" if known is not None else "")
            summary = await held(job_run_id, preferences.hold_seconds(s.run_wait_seconds))
            if summary is not None and not same_tenants(summary, tenants):
                return key_reused(self)  # a concurrent first request with this key asked for others
            answer = finished_answer(summary) if summary is not None else None
            applied = preferences.applied(answered_async=answer is None)
            headers: dict[str, str] = {"Preference-Applied": applied} if applied else {}
            if answer is not None:
                return self.json(answer.body, status=answer.status, headers=headers)
            headers["Location"] = status_path(job_run_id)
            return self.json({"jobRunId": job_run_id, "tenantIds": tenants}, status=202, headers=headers)

        @staticmethod
        def job_run_id(request: Request, principal: ServicePrincipal) -> tuple[str, str | None]:
            """The run this request names: its Idempotency-Key's for this caller, or a new one."""
            raw = request.headers.get("Idempotency-Key")
            if raw is None:
                return f"http-{uuid.uuid4().hex}", None
            try:
                key = check_idempotency_key(raw)
            except ValueError as exc:
                return "", str(exc)
            return idempotent_job_run_id(key, principal.subject, principal.tenant_ids), None

    @app.page(f"{API}/runs/{{job_run_id}}")
    class RunState(View):
        async def get(self, request: Request, job_run_id: str) -> Response:
            try:
                principal = verifier.verify(request.headers.get("Authorization"))
            except AuthError as exc:
                return refuse(self, exc.status, exc.code, exc.message)
            summary = run_summary(job_run_id)
            if summary is None:
                return refuse(self, 404, "not_found", "no run with that jobRunId (yet)")
            if not covers(principal, summary):
                return refuse(self, 403, "tenant_forbidden", "the run covers tenants the token lacks")
            return self.json(summary)


def covers(principal: ServicePrincipal, summary: Mapping[str, Any]) -> bool:
    """May this caller read the run: its token allows every tenant, or every tenant of the run."""
    allowed = principal.tenant_ids
    return allowed is None or (summary.get("tenantIds") is not None and set(summary["tenantIds"]) <= allowed)
