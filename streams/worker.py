"""`model-monitoring worker`: create the topics if absent, then run the Faust worker."""

from __future__ import annotations

import asyncio
import gc
import logging

import faust

from streams.admin import ensure_topics
from streams.app import build_app
from streams.logs import logging_config
from streams.settings import Settings

log = logging.getLogger("model_monitoring.worker")


def run_worker(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    asyncio.run(ensure_topics(settings))
    monitor = build_app(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker = faust.Worker(monitor.app, loglevel=settings.log_level.upper(),
                          logging_config=logging_config(settings.log_level),
                          redirect_stdouts=False, console_port=0)

    @monitor.app.task
    async def tune_gc() -> None:
        # long-lived start-up objects leave the GC's working set; fewer young collections
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)

    log.info("worker %s on %s (partitions=%d, store=%s, web=%s:%d)", settings.app_id,
             settings.kafka_bootstrap_servers, settings.partitions, settings.store,
             settings.web_host, settings.web_port)
    worker.execute_from_commandline()
    return 0
