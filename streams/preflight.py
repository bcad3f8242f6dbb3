"""The worker's first contact with Kafka: reach it with the configured security, create the
topics, and answer the probes meanwhile — before the faust worker starts.

Why before faust, and why not just fail: the topics must exist before the app starts, and a
worker whose credentials or CA file the broker refuses cannot do anything. It used to retry
for 60 s, two log lines a second that said only "Unable to bootstrap", and exit with code 2;
under an orchestrator that is a crash loop, for a problem often fixed on the broker's side (a
user not yet created, a CA being rotated). So until Kafka answers, the worker

- tries one connection per bootstrap address with the configured security (aiokafka's client
  would hide the cause behind "Unable to bootstrap"), then creates the topics;
- names the cause (streams/kafka_problems.py) and logs it once per kind of problem, then at most
  once a minute while it lasts: "cannot connect to Kafka at HOST:PORT: authentication failed
  (SCRAM-SHA-512 user 'alice')";
- retries with capped exponential backoff (1 s doubling to 30 s, ±20% jitter);
- serves /healthz (200: the process is alive, restarting it would not help) and /readyz (503,
  with the reason in the body) on the worker's web port, from a small aiohttp server that is
  closed once the topics exist, so that faust's web server binds the same port;
- stops cleanly on SIGTERM/SIGINT.

A topic layout the service cannot run with (TopicLayoutError) is not retried: it needs a
person, and the command reports it and exits as before."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiokafka.conn import collect_hosts, create_conn

from model_monitoring.streams.admin import TopicLayoutError, create_topics
from model_monitoring.streams.kafka_problems import ConnectionProblem, ProblemLog, diagnose, most_telling
from model_monitoring.streams.settings import Settings

log = logging.getLogger("model_monitoring.preflight")

BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
CONNECT_TIMEOUT_MS = 10_000


@dataclass
class Waiting:
    """What /readyz says while the worker waits for Kafka."""

    bootstrap: str
    attempts: int = 0
    problem: ConnectionProblem | None = None
    started: float = field(default_factory=time.monotonic)

    def body(self) -> dict[str, Any]:
        return {"ready": False, "phase": "waiting for Kafka", "bootstrap": self.bootstrap,
                "attempts": self.attempts, "waitingSeconds": round(time.monotonic() - self.started, 1),
                "problem": self.problem.kind if self.problem else None,
                "reason": self.problem.reason if self.problem else "connecting"}


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt` (1, 2, …)."""
    base = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** min(attempt - 1, 16))
    return base * random.uniform(0.8, 1.2)


async def probe(s: Settings) -> None:
    """Connect (and authenticate) to one bootstrap address; raise the most telling failure."""
    failures: list[tuple[ConnectionProblem, BaseException]] = []
    kwargs = s.kafka_client_kwargs()  # raises on an unreadable CA file: diagnosed by the caller
    for host, port, _ in collect_hosts(kwargs.pop("bootstrap_servers"), randomize=False):
        try:
            conn = await create_conn(host, port, request_timeout_ms=CONNECT_TIMEOUT_MS, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every cause is diagnosed
            failures.append((diagnose(exc, s), exc))
            continue
        conn.close()
        return
    chosen = most_telling([p for p, _ in failures])
    raise next(exc for p, exc in failures if p is chosen)


async def wait_for_kafka(s: Settings, state: Waiting, stop: asyncio.Event,
                         problems: ProblemLog | None = None) -> dict[str, int] | None:
    """Retry until the topics exist (their partition counts) or `stop` is set (None)."""
    problems = problems or ProblemLog()
    loop = asyncio.get_running_loop()
    where = s.kafka_bootstrap_servers
    while not stop.is_set():
        state.attempts += 1
        try:
            await probe(s)
            counts = await create_topics(s)
        except TopicLayoutError:
            raise
        except Exception as exc:  # noqa: BLE001 - diagnosed, said once per kind, retried
            state.problem = problem = diagnose(exc, s)
            line = problems.failed(problem, loop.time())
            if line is not None:
                log.log(problem.level, "cannot connect to Kafka at %s: %s", where, line,
                        exc_info=exc if problem.kind == "unexpected" else None,
                        extra={"fields": {"problem": problem.kind, "attempts": problems.attempts}})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff(problems.attempts))
            continue
        recovered = problems.succeeded(loop.time())
        if recovered is not None:
            log.info("connected to Kafka at %s %s", where, recovered)
        return counts
    log.info("stopped while waiting for Kafka at %s", where)
    return None


async def serve_probes(s: Settings, state: Waiting) -> web.AppRunner:
    """/healthz and /readyz on the worker's web port until faust's web server takes over."""

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "up", "phase": "waiting for Kafka"})

    async def readyz(request: web.Request) -> web.Response:
        return web.json_response(state.body(), status=503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, s.web_host, s.web_port).start()
    return runner


async def preflight(s: Settings) -> dict[str, int] | None:
    """Wait for Kafka and create the topics, serving the probes; None if stopped by a signal."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    state = Waiting(bootstrap=s.kafka_bootstrap_servers)
    runner = await serve_probes(s, state)
    try:
        return await wait_for_kafka(s, state, stop)
    finally:
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
