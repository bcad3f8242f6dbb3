"""HTTP on the worker's web port: run the job, read a run, and what operators scrape and probe.

`POST /api/v1/ml/model-monitoring/run` and `GET …/runs/{jobRunId}` need a service JWT; the
route publishes the same trigger message as every other source (one path)."""

from __future__ import annotations

import logging
import uuid

import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from model_monitoring.agents.run import publish_trigger
from model_monitoring.streams.app import Monitor
from model_monitoring.streams.auth import AuthConfig, AuthError, TokenVerifier
from model_monitoring.tables.keys import RunStatusKey

log = logging.getLogger("model_monitoring.web")
API = "/api/v1/ml/model-monitoring"


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


def register(monitor: Monitor) -> None:
    app, s, m = monitor.app, monitor.settings, monitor.metrics
    config = AuthConfig.from_settings(s)
    verifier = TokenVerifier(config)

    @app.task
    async def announce() -> None:
        if config.disabled:
            log.warning("HTTP authentication is DISABLED (MODEL_MONITORING_AUTH_DISABLED): "
                        "anyone who reaches port %d can run the job", s.web_port)
        else:
            log.info("HTTP authentication: %s", config.describe())

    def refuse(view: View, status: int, code: str, message: str) -> Response:
        return view.json({"error": code, "message": message}, status=status)

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
            job_run_id = f"http-{uuid.uuid4().hex}"
            await publish_trigger(monitor, job_run_id, tenants, "http")
            log.info("run requested over HTTP by %s: jobRunId=%s tenants=%s",
                     principal.subject, job_run_id, tenants if tenants is not None else "all")
            return self.json({"jobRunId": job_run_id, "tenantIds": tenants}, status=202)

    @app.page(f"{API}/runs/{{job_run_id}}")
    class RunState(View):
        async def get(self, request: Request, job_run_id: str) -> Response:
            try:
                principal = verifier.verify(request.headers.get("Authorization"))
            except AuthError as exc:
                return refuse(self, exc.status, exc.code, exc.message)
            raw = monitor.tables.run_status.get(RunStatusKey(job_run_id).encode())
            if raw is None:
                return refuse(self, 404, "not_found", "no run with that jobRunId (yet)")
            summary = orjson.loads(raw)
            allowed = principal.tenant_ids
            if allowed is not None and (summary.get("tenantIds") is None
                                        or not set(summary["tenantIds"]) <= allowed):
                return refuse(self, 403, "tenant_forbidden", "the run covers tenants the token lacks")
            return self.json(summary)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(m.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "up"})

    @app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]  # TableManager's
            assigned = bool(app.consumer.assignment()) if app.consumer else False
            ready = recovered and assigned and not app.rebalancing
            body = {"ready": ready, "tablesRecovered": recovered, "assigned": assigned,
                    "rebalancing": bool(app.rebalancing)}
            return self.json(body, status=200 if ready else 503)
