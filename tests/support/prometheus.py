"""A real Prometheus for the dashboard test: Debian's `prometheus` binary (2.42), started on a
free loopback port with the project's deploy/prometheus.yml, its targets rewritten to the test's
worker, its own storage in a temporary folder, and stopped by the PID it was started with."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from model_monitoring.commands.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_YML = ROOT / "deploy" / "prometheus.yml"
WORKER_JOB = "model-monitoring"


def prometheus_binary() -> str | None:
    """The `prometheus` server on PATH (Debian's package installs /usr/bin/prometheus)."""
    return shutil.which("prometheus")


def rewritten_config(worker_address: str, own_address: str, scrape_interval_s: int) -> dict[str, Any]:
    """deploy/prometheus.yml as shipped, but for the test: the worker job scrapes the test's
    worker, the self-scrape job this Prometheus, and every job at `scrape_interval_s`."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = f"{scrape_interval_s}s"
    config["global"]["evaluation_interval"] = f"{scrape_interval_s}s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert WORKER_JOB in jobs, f"deploy/prometheus.yml has no {WORKER_JOB!r} job: {sorted(jobs)}"
    for name, job in jobs.items():
        target = worker_address if name == WORKER_JOB else own_address
        job.pop("scrape_interval", None)
        for static in job["static_configs"]:
            static["targets"] = [target]
    return config


class PrometheusError(AssertionError):
    """Prometheus refused a query (a PromQL error), or never became ready."""


@dataclass
class PrometheusServer:
    binary: str
    workdir: Path
    worker_address: str
    scrape_interval_s: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(rewritten_config(self.worker_address, self.address,
                                                          self.scrape_interval_s)), encoding="utf-8")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, f"--config.file={config_path}",
                 f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                 f"--web.listen-address={self.address}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise PrometheusError(f"prometheus not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.2)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/-/ready", timeout=1.0) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self, timeout: float = 20.0) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def api(self, path: str, **params: str | float) -> Any:
        """The `data` of a Prometheus HTTP API answer; PrometheusError with its error otherwise."""
        url = f"http://{self.address}/api/v1/{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=30.0) as resp:
                doc = json.load(resp)
        except urllib.error.HTTPError as exc:  # 400/422: a PromQL error, in the same JSON shape
            doc = json.load(exc)
        if doc.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        """An instant query at unix time `at`: the result's series (a scalar is one series)."""
        data = self.api("query", query=expr, time=at)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [{"value": data["result"]}]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return list(self.api("query_range", query=expr, start=start, end=end, step=step)["result"])

    def worker_target_health(self) -> str:
        """`up`, `down` or `unknown` for the worker's scrape target, with its last error."""
        for target in self.api("targets", state="active")["activeTargets"]:
            if target["labels"].get("job") == WORKER_JOB:
                return f"{target['health']} {target.get('lastError', '')}".strip()
        return "no target"
