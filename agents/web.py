"""HTTP on the worker's web port: the run route and its status (`agents/run_route.py`, with a
service JWT), what operators scrape and probe, and the OpenAPI document of them all
(`schemas/openapi.json`, served as kept in the repo)."""

from __future__ import annotations

import logging

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from model_monitoring.agents import run_route
from model_monitoring.schemas.openapi import openapi_document
from model_monitoring.streams.app import Monitor
from model_monitoring.streams.auth import AuthConfig, TokenVerifier

log = logging.getLogger("model_monitoring.web")


def register(monitor: Monitor) -> None:
    app, s, m = monitor.app, monitor.settings, monitor.metrics
    config = AuthConfig.from_settings(s)
    verifier = TokenVerifier(config)
    document = openapi_document()

    @app.task
    async def announce() -> None:
        if config.disabled:
            log.warning("HTTP authentication is DISABLED (MODEL_MONITORING_AUTH_DISABLED): "
                        "anyone who reaches port %d can run the job", s.web_port)
        else:
            log.info("HTTP authentication: %s", config.describe())

    def refuse(view: View, status: int, code: str, message: str) -> Response:
        return view.json({"error": code, "message": message}, status=status)

    run_route.register(monitor, verifier, refuse)

    @app.page("/openapi.json")
    class OpenAPI(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(document, content_type="application/json")

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
