"""Apache Kafka itself, started by the project: a single-node KRaft broker with its log on disk,
configured like the Kafka service of `docker-compose.kafka.yml`.

The jars come from Maven Central once (`org.apache.kafka:kafka_2.13` and its runtime
dependencies, plus the log4j2 binding for the slf4j 1.x API Kafka logs through), resolved by
Maven into a cache; Java 17 runs it. It is the broker on which the faults only a durable broker
has (restarts with the log intact, compaction, transactions) can be tested."""

from __future__ import annotations

import base64
import fcntl
import json
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from model_monitoring.commands.broker import BrokerProcess, free_port
from model_monitoring.commands.kafka_ready import wait_group_coordinator
from model_monitoring.commands.kafka_sasl import LISTENER, SaslSslConfig

KAFKA_VERSION = "4.4.0"  # docker-compose.kafka.yml pins apache/kafka to the same version
LOG4J_VERSION = "2.25.5"  # the log4j-core that kafka-server 4.4.0 brings

POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>model-monitoring</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <!-- Kafka logs through the slf4j 1.7 API: without this binding it logs nothing at all -->
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version><scope>runtime</scope>
    </dependency>
  </dependencies>
</project>
"""

LOG4J2 = """status = warn
name = model-monitoring-kafka
shutdownHook = disable
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.target = SYSTEM_OUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${sys:kafka.root.level:-WARN}
rootLogger.appenderRef.stdout.ref = STDOUT
logger.raftserver.name = kafka.server.KafkaRaftServer
logger.raftserver.level = INFO
logger.signal.name = org.apache.kafka.common.utils.internals.LoggingSignalHandler
logger.signal.level = INFO
"""

JVM_FLAGS = ["-Xms256m", "-Xmx1g", "-Djava.awt.headless=true"]
#: a broker that runs for a while (the `broker` command, the benchmarks): Kafka's own collector
SERVER_JVM_FLAGS = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExplicitGCInvokesConcurrent"]
#: a broker for a test session (`lean=True`): the C1 compiler only and the serial collector, which
#: spend far less CPU getting started and on a light load (the broker's CPU over
#: tests/integration/test_weekly_run.py on Kafka: 26 s with the server flags, 11 s with these)
LEAN_JVM_FLAGS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]


class BrokerUnavailable(RuntimeError):
    """What is missing to run Apache Kafka here, in one line."""


def cache_root() -> Path:
    return Path.home() / ".cache" / "model-monitoring"


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerUnavailable("Apache Kafka needs Java 17 or newer: no `java` on PATH "
                                "(install a JDK, e.g. apt-get install openjdk-17-jre-headless)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    text = (out.stderr or out.stdout).split('"')
    major = text[1].split(".")[0] if len(text) > 1 else "0"
    if not major.isdigit() or int(major) < 17:
        raise BrokerUnavailable(f"Apache Kafka {KAFKA_VERSION} needs Java 17 or newer; "
                                f"`java` on PATH is {major or 'unknown'}")
    return java


def kafka_libs(cache: Path | None = None) -> Path:
    """The broker's jars, fetched with Maven into the cache once (a file lock keeps two test
    sessions from fetching at the same time)."""
    root = (cache or cache_root()) / f"kafka-{KAFKA_VERSION}"
    libs = root / "libs"
    done = root / "fetched"
    if done.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerUnavailable("fetching Apache Kafka's jars needs Maven: no `mvn` on PATH "
                                "(install it, e.g. apt-get install maven)")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return libs
        (root / "pom.xml").write_text(POM)
        if libs.exists():
            shutil.rmtree(libs)
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(root / "pom.xml"), "dependency:copy-dependencies",
             f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
            capture_output=True, text=True, check=False)
        if result.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
            tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
            raise BrokerUnavailable(f"Maven could not fetch Apache Kafka {KAFKA_VERSION}: "
                                    + " | ".join(tail))
        done.write_text(KAFKA_VERSION)
    return libs


def cluster_id() -> str:
    """Base64url of 16 random bytes, never with a leading '-' (as Kafka's Uuid.randomUuid()):
    the format tool would read `-t -x…` as an option and fail, one start in 64."""
    cid = "-"
    while cid.startswith("-"):
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    return cid


@dataclass
class KafkaBroker(BrokerProcess):
    """One Apache Kafka process (broker and controller) on 127.0.0.1, its log in `data_dir`.
    Stopped and started again on the same directory, it keeps its data and its ports."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    log_path: Path | None = None
    extra_config: dict[str, str] = field(default_factory=dict)
    extra_listeners: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (port, protocol)
    jvm_options: list[str] = field(default_factory=list)
    lean: bool = False  # LEAN_JVM_FLAGS instead of SERVER_JVM_FLAGS
    sasl_ssl: SaslSslConfig | None = None  # a second listener: SASL_SSL, SCRAM-SHA-512 users
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    stop_timeout = 60.0  # Kafka's controlled shutdown
    engine: str = field(default="kafka", init=False)
    durable: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        saved = self._ports_file()
        ports = json.loads(saved.read_text()) if saved.exists() else {}
        if ports:  # a restart keeps its ports: clients and the transaction log know them
            self.port, self.controller_port = ports["port"], ports["controller"]
        else:
            self.port = self.port or free_port(self.host)
            self.controller_port = free_port(self.host)
        if self.sasl_ssl is not None:
            sasl_port = ports.get("sasl_ssl") or self.sasl_ssl.port or free_port(self.host)
            self.sasl_ssl = replace(self.sasl_ssl, port=sasl_port)
            self.extra_listeners = {**self.extra_listeners, LISTENER: (sasl_port, LISTENER)}
            self.extra_config = {**self.sasl_ssl.broker_config(self.data_dir), **self.extra_config}

    def _ports_file(self) -> Path:
        return self.data_dir / "ports.json"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        assert self.sasl_ssl is not None, "no SASL_SSL listener configured"
        return f"{self.host}:{self.sasl_ssl.port}"

    def worker_env(self) -> dict[str, str]:
        """A worker on this broker: the production profile, with group timeouts short enough
        for tests that restart workers (a production user may shorten them the same way)."""
        return {"MODEL_MONITORING_BROKER_PROFILE": "kafka",
                "MODEL_MONITORING_BROKER_SESSION_TIMEOUT_SECONDS": "10",
                "MODEL_MONITORING_BROKER_HEARTBEAT_INTERVAL_SECONDS": "1",
                "MODEL_MONITORING_BROKER_REBALANCE_TIMEOUT_SECONDS": "10"}

    def describe(self) -> str:
        return f"Apache Kafka {KAFKA_VERSION} on {self.bootstrap} (log in {self.data_dir})"

    def properties(self) -> str:
        listeners = [f"PLAINTEXT://{self.host}:{self.port}", f"CONTROLLER://{self.host}:{self.controller_port}"]
        advertised = [f"PLAINTEXT://{self.host}:{self.port}"]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        for name, (port, protocol) in sorted(self.extra_listeners.items()):
            listeners.append(f"{name}://{self.host}:{port}")
            advertised.append(f"{name}://{self.host}:{port}")
            protocols.append(f"{name}:{protocol}")
        config = {
            # KRaft: this one node is both broker and controller (as in the Compose file)
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{self.host}:{self.controller_port}",
            "listeners": ",".join(listeners),
            "advertised.listeners": ",".join(advertised),
            "listener.security.protocol.map": ",".join(protocols),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir / "log"),
            # one node: every internal topic has one replica
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            # the worker creates its topics with the partition counts the join needs
            "auto.create.topics.enable": "false",
            "num.partitions": "8",
            "group.initial.rebalance.delay.ms": "0",
            # the features topic accepts envelopes of many records (16 MiB requests)
            "message.max.bytes": "16777216",
            "replica.fetch.max.bytes": "16777216",
            # a restart after kill -9 registers again within seconds, not ~10 s
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
            "num.network.threads": "2",
            "num.io.threads": "4",
            **self.extra_config,
        }
        return "".join(f"{k}={v}\n" for k, v in config.items())

    def _prepare(self, java: str, libs: Path) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports = {"port": self.port, "controller": self.controller_port}
        if self.sasl_ssl is not None:
            ports["sasl_ssl"] = self.sasl_ssl.port
            self.sasl_ssl.write_keystore(self.data_dir)
        self._ports_file().write_text(json.dumps(ports))
        config = self.data_dir / "server.properties"
        config.write_text(self.properties())
        (self.data_dir / "log4j2.properties").write_text(LOG4J2)
        if not (self.data_dir / "log" / "meta.properties").exists():
            users = self.sasl_ssl.format_arguments() if self.sasl_ssl is not None else []
            result = subprocess.run(
                [java, "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format", "-t", cluster_id(),
                 "-c", str(config), "--standalone", *users], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise BrokerUnavailable(f"formatting Kafka's log dir failed: {result.stdout}{result.stderr}"[:500])
        return config

    def command(self, java: str, libs: Path, config: Path) -> list[str]:
        return [java, *JVM_FLAGS, *(LEAN_JVM_FLAGS if self.lean else SERVER_JVM_FLAGS), *self.jvm_options,
                f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                "-cp", f"{libs}/*", "kafka.Kafka", str(config)]

    def start(self, timeout: float = 120.0) -> KafkaBroker:
        java, libs = java_binary(), kafka_libs()
        config = self._prepare(java, libs)
        with open(self.log_path or self.data_dir / "kafka.log", "ab") as out:
            self.process = subprocess.Popen(self.command(java, libs, config), stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """The client port opens once the broker is registered and unfenced; then the group
        coordinator must answer (`commands/kafka_ready.py`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BrokerUnavailable(f"Kafka exited with code {self.process.returncode} while "
                                        f"starting; see {self.log_path or self.data_dir / 'kafka.log'}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise TimeoutError(f"Kafka did not listen on {self.bootstrap} within {timeout:.0f}s")
        wait_group_coordinator(self.bootstrap, max(5.0, deadline - time.monotonic()))


def run_kafka_foreground(port: int, data_dir: Path) -> int:
    """`model-monitoring broker --engine kafka`: run Apache Kafka until Ctrl-C or SIGTERM."""
    try:
        broker = KafkaBroker(data_dir=data_dir, port=port)
        started = time.monotonic()
        broker.start()
    except BrokerUnavailable as exc:
        print(f"model-monitoring broker: {exc}", flush=True)
        return 2
    print(f"{broker.describe()} ready in {time.monotonic() - started:.1f}s; Ctrl-C stops it",
          flush=True)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        assert broker.process is not None
        return broker.process.wait()
    except KeyboardInterrupt:
        broker.stop()
        print("Kafka stopped", flush=True)
        return 0
