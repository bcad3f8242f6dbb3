"""The whole service: the app from `streams/app.py` with every agent, timer and view registered."""

from __future__ import annotations

from model_monitoring.agents import baselines, continuous, ingest, maintenance, run, snapshot, web
from model_monitoring.streams import rewind
from model_monitoring.streams.app import Monitor, create_monitor
from model_monitoring.streams.settings import Settings


def build_app(s: Settings) -> Monitor:
    """Build the app and register every agent, timer and view."""
    monitor = create_monitor(s)
    for module in (ingest, baselines, maintenance, run, snapshot, web, continuous):
        module.register(monitor)
    rewind.register(monitor.app)  # no record skipped on a partition the group has not committed yet
    return monitor
