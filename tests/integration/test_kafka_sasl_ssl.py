"""Security on the wire: the worker on Apache Kafka through a SASL_SSL listener only (TLS, clients
authenticated with SCRAM-SHA-512) creates its topics, ingests, runs the weekly job and publishes
its completion. A wrong password, or a CA file that did not sign the broker's certificate, ends
in one clear log line and a 503 /readyz with the reason, the worker alive and retrying: no
crash loop, no traceback storm."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.helpers import create_ssl_context

from model_monitoring.commands.harness import WorkerProcess, produce, read_topic, service_env
from model_monitoring.commands.kafka_broker import BrokerUnavailable, KafkaBroker, java_binary, kafka_libs
from model_monitoring.commands.kafka_sasl import SaslSslConfig
from model_monitoring.commands.simulate import StreamConfig, generate
from model_monitoring.commands.tls_certs import TlsFiles, write_server_tls, write_unrelated_ca
from model_monitoring.schemas.timestamps import format_timestamp
from tests.support.baselines import baseline_message, build_baselines
from tests.support.waiting import wait_until

# Kafka's own listener: run once, in the Kafka tier (MM_TEST_BROKER=kafka) of the test command
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.environ.get("MM_TEST_BROKER", "tansu") != "kafka",
                                 reason="a SASL_SSL listener is Apache Kafka's: runs with MM_TEST_BROKER=kafka")]

USER = "mm-worker"
PASSWORD = "s3cret,with=comma"  # a comma: the format tool could not take it in clear
MECHANISM = "SCRAM-SHA-512"
END_MS = 1_795_046_400_000  # a midnight UTC
OBSERVE_SECONDS = 30.0
RETRIES = 4


@dataclass
class SecureKafka:
    broker: KafkaBroker
    tls: TlsFiles
    root: Path

    @property
    def bootstrap(self) -> str:
        return self.broker.sasl_ssl_bootstrap

    def security(self) -> dict[str, Any]:
        """The test's own clients speak SASL_SSL too."""
        return {"security_protocol": "SASL_SSL", "sasl_mechanism": MECHANISM,
                "sasl_plain_username": USER, "sasl_plain_password": PASSWORD,
                "ssl_context": create_ssl_context(cafile=str(self.tls.ca_file))}

    def worker_env(self, name: str, *, password: str = PASSWORD, cafile: Path | None = None) -> dict[str, str]:
        return service_env(self.broker, self.root / name / "data", app_id=f"{name}-mm", topic_prefix=f"{name}.",
                           extra={"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,  # the SASL_SSL listener only
                                  "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": MECHANISM,
                                  "KAFKA_SASL_USERNAME": USER, "KAFKA_SASL_PASSWORD": password,
                                  "KAFKA_SSL_CAFILE": str(cafile or self.tls.ca_file),
                                  "MODEL_MONITORING_PARTITIONS": "2", "MODEL_MONITORING_CRON_ENABLED": "false"})


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    try:
        java_binary()
        kafka_libs()
    except BrokerUnavailable as exc:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):  # CI promises Java and Maven
            pytest.fail(f"CI is set but Apache Kafka cannot run here: {exc}")
        pytest.skip(f"Apache Kafka cannot run here: {exc}")
    root = tmp_path_factory.mktemp("sasl-ssl")
    tls = write_server_tls(root / "tls")
    broker = KafkaBroker(data_dir=root / "kafka", lean=True, sasl_ssl=SaslSslConfig(
        ca_file=tls.ca_file, cert_file=tls.cert_file, key_file=tls.key_file, users={USER: PASSWORD}))
    broker.start()
    try:
        yield SecureKafka(broker, tls, root)
    finally:
        broker.stop()


def remote_ports(pid: int) -> set[int]:
    """The remote ports of a process's TCP connections (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in inodes and cols[3] == "01":  # ESTABLISHED
                ports.add(int(cols[2].rsplit(":", 1)[1], 16))
    return ports


def test_worker_runs_the_weekly_job_over_sasl_ssl(secure_kafka: SecureKafka) -> None:
    kafka, security = secure_kafka, secure_kafka.security()
    env = kafka.worker_env("secure")
    worker = WorkerProcess(env, kafka.root / "secure.log").start()
    try:
        worker.wait_ready(timeout=180)
        assert any("created topics" in d.get("message", "") for d in worker.json_lines())
        topics = {name: env[f"MODEL_MONITORING_{name.upper()}_TOPIC"]
                  for name in ("features", "outcomes", "baselines", "trigger", "completed")}
        baselines = build_baselines()
        asyncio.run(produce(kafka.bootstrap, [(topics["baselines"], *baseline_message(b)) for b in baselines.values()],
                            security=security))
        wait_until(lambda: worker.metric("model_monitoring_records_consumed_total", topic=topics["baselines"]) >= 2,
                   60, every=0.3, failure=worker.log_tail)
        messages = list(generate(StreamConfig(events_per_key=150, days=8, end_ms=END_MS, seed=5)))
        sent = {"features": 0, "outcomes": 0}
        for m in messages:
            sent[m.kind] += 1
        asyncio.run(produce(kafka.bootstrap, [(topics[m.kind], m.key, m.value) for m in messages], security=security))
        wait_until(lambda: all(worker.metric("model_monitoring_records_consumed_total", topic=topics[kind]) >= n
                               for kind, n in sent.items()), 120, every=0.5, failure=worker.log_tail)

        trigger = {"job": "model-monitoring", "jobRunId": "sasl-ssl-1",
                   "metadata": {"windowEnd": format_timestamp(END_MS)}}
        asyncio.run(produce(kafka.bootstrap, [(topics["trigger"], b"sasl-ssl-1", orjson.dumps(trigger))],
                            security=security))
        done: list[dict[str, Any]] = []
        deadline = time.monotonic() + 120
        while not done and time.monotonic() < deadline:
            records = asyncio.run(read_topic(kafka.bootstrap, topics["completed"], timeout=5, security=security))
            done = [d for d in (orjson.loads(r.value) for r in records) if d["jobRunId"] == "sasl-ssl-1"]
        assert done, f"no completion:\n{worker.log_tail()}"
        assert done[0]["tenants"] == ["acme", "globex", "initech"]
        assert done[0]["driftChecked"] > 0 and done[0]["performanceChecked"] > 0

        # every connection the worker holds goes to the SASL_SSL listener, none to PLAINTEXT
        assert worker.process is not None
        ports = remote_ports(worker.process.pid)
        assert kafka.broker.sasl_ssl is not None and kafka.broker.sasl_ssl.port in ports
        assert kafka.broker.port not in ports
    finally:
        worker.stop()
    assert worker.process is not None and worker.process.returncode == 0, worker.log_tail()


@pytest.mark.parametrize("fault", ["wrong-password", "untrusted-ca"])
def test_refused_connection_is_one_clear_line_and_not_ready(secure_kafka: SecureKafka, fault: str) -> None:
    kafka = secure_kafka
    if fault == "wrong-password":
        env = kafka.worker_env(fault, password="not-the-password")
        kind, line = "authentication", f"authentication failed ({MECHANISM} user '{USER}')"
    else:
        env = kafka.worker_env(fault, cafile=write_unrelated_ca(kafka.root / "other-ca.pem"))
        kind, line = "tls-untrusted", "TLS: certificate not trusted"
    log_path = kafka.root / f"{fault}.log"
    worker = WorkerProcess(env, log_path).start()
    try:
        first: list[tuple[int, bytes]] = []

        def answered() -> bool:
            try:
                first.append(worker.get("/readyz", timeout=1.0))
            except OSError:
                return False
            return True

        wait_until(answered, 60, every=0.25, failure=worker.log_tail)
        started, attempts = time.monotonic(), 0
        # alive and not ready, throughout, until it has retried RETRIES times (with backoff from
        # 1 s, doubling: ~7 s) — or OBSERVE_SECONDS, when it fails the check after the loop
        while attempts < RETRIES and time.monotonic() - started < OBSERVE_SECONDS:
            time.sleep(1.0)
            assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
            status, body = worker.get("/readyz", timeout=2.0)
            assert status == 503, body
            attempts = orjson.loads(body).get("attempts", 0)
        status, body = worker.get("/readyz")
        ready = orjson.loads(body)
        assert status == 503 and ready["ready"] is False
        assert ready["problem"] == kind and line in ready["reason"], ready
        assert ready["attempts"] >= RETRIES, ready  # retrying, with backoff
        assert worker.get("/healthz")[0] == 200

        text = log_path.read_text(errors="replace")
        clear = [d for d in worker.json_lines() if line in d.get("message", "")]
        assert len(clear) == 1, text
        assert clear[0]["message"].startswith(f"cannot connect to Kafka at {kafka.bootstrap}: ")
        assert clear[0]["level"] == "error" and clear[0]["problem"] == kind
        assert text.count("Traceback") < 2, text
        assert len(text.splitlines()) < 10, text  # no line per attempt
    finally:
        worker.stop(timeout=15)
    assert worker.process is not None and worker.process.returncode == 0, worker.log_tail()
