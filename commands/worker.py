"""`model-monitoring worker`: wait for Kafka and create the topics if absent (answering the
probes meanwhile, streams/preflight.py), then run the Faust worker."""

from __future__ import annotations

import asyncio
import gc
import logging
import logging.config
import os
import shutil
from pathlib import Path

import faust

from model_monitoring.agents.service import build_app
from model_monitoring.streams.logs import logging_config
from model_monitoring.streams.preflight import preflight
from model_monitoring.streams.settings import Settings

log = logging.getLogger("model_monitoring.worker")


def discard_state_after_crash(settings: Settings, tabledir: Path) -> bool:
    """Local tables that outlived a crash may hold writes their changelog never received (the
    store is written before the changelog message is acknowledged). Replayed events would then
    be skipped as already counted, and the changelog — what a rebalance or a new machine
    recovers from — would stay short of them. So after an unclean stop the local state is
    dropped and rebuilt from the changelogs, which the offset watermarks are exact against.
    A clean stop (SIGTERM) flushes everything and keeps the local state."""
    marker = settings.data_dir / f"{settings.app_id}.running"
    crashed = marker.exists()
    if crashed and tabledir.exists():
        log.warning("the previous worker did not stop cleanly: local table state discarded, "
                    "recovering from the changelogs")
        shutil.rmtree(tabledir)
    marker.write_text(str(os.getpid()))
    return crashed


def run_worker(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    logging.config.dictConfig(logging_config(settings.log_level))  # faust's worker sets the same later
    if asyncio.run(preflight(settings)) is None:
        return 0  # stopped before Kafka could be reached
    monitor = build_app(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    discard_state_after_crash(settings, Path(monitor.app.conf.tabledir))
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
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if not exc.code:  # a clean stop: the local state matches the changelogs
            (settings.data_dir / f"{settings.app_id}.running").unlink(missing_ok=True)
        raise
    return 0
