"""The worker's start-up against a Kafka it cannot use: each failure named in one line, said once
per kind and then once a minute, retried with backoff while /readyz answers 503 — no broker
needed. And the throwaway TLS material and SCRAM arguments the SASL_SSL broker is built from."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import socket
import ssl
import threading
from pathlib import Path

import aiohttp
import pytest
from aiokafka import errors

from model_monitoring.commands.kafka_broker import cluster_id, free_port
from model_monitoring.commands.kafka_sasl import ITERATIONS, SaslSslConfig
from model_monitoring.commands.tls_certs import TlsFiles, write_server_tls, write_unrelated_ca
from model_monitoring.streams import preflight
from model_monitoring.streams.kafka_problems import ConnectionProblem, ProblemLog, diagnose, most_telling
from model_monitoring.streams.settings import Settings

SASL = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                kafka_sasl_username="alice", kafka_sasl_password="x", kafka_ssl_cafile="/etc/ca.pem")


def verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    exc.verify_code, exc.verify_message = code, message
    return exc


@pytest.mark.parametrize(("exc", "kind", "words"), [
    (errors.SaslAuthenticationFailed("invalid credentials"), "authentication",
     "authentication failed (SCRAM-SHA-512 user 'alice')"),
    (verify_error(19, "self-signed certificate in certificate chain"), "tls-untrusted",
     "TLS: certificate not trusted (self-signed certificate in certificate chain; trusted: /etc/ca.pem)"),
    (verify_error(20, "unable to get local issuer certificate"), "tls-untrusted", "TLS: certificate not trusted"),
    (verify_error(64, "IP address mismatch"), "tls-hostname", "does not name this address"),
    (verify_error(10, "certificate has expired"), "tls-expired", "not valid now"),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "tls", "TLS handshake failed"),
    (FileNotFoundError(2, "No such file or directory", "/etc/ca.pem"), "tls-files", "cannot read /etc/ca.pem"),
    (errors.UnsupportedSaslMechanismError("PLAIN only"), "sasl-mechanism", "refused SASL mechanism SCRAM-SHA-512"),
    (errors.TopicAuthorizationFailedError(), "authorization", "not authorized (SCRAM-SHA-512 user 'alice')"),
    (ConnectionRefusedError(111, "Connection refused"), "unreachable", "connection refused"),
    (TimeoutError(), "unreachable", "timed out"),
    (socket.gaierror(-2, "Name or service not known"), "unreachable", "cannot resolve the host"),
    (errors.KafkaConnectionError("Connection closed"), "unreachable", "Connection closed"),
    (errors.RequestTimedOutError(), "kafka", "RequestTimedOutError"),
    (RuntimeError("boom"), "unexpected", "RuntimeError: boom"),
])
def test_each_failure_is_named(exc: BaseException, kind: str, words: str) -> None:
    problem = diagnose(exc, SASL)
    assert problem.kind == kind and words in problem.reason
    assert "\n" not in problem.reason
    assert problem.level == (logging.WARNING if kind == "unreachable" else logging.ERROR)


def test_a_refusal_says_more_than_silence() -> None:
    silent, refused = ConnectionProblem("unreachable", "timed out"), ConnectionProblem("authentication", "no")
    assert most_telling([silent, refused, silent]) is refused
    assert most_telling([silent]) is silent


def test_problem_log_says_each_kind_once_then_once_a_minute() -> None:
    auth, down = ConnectionProblem("authentication", "authentication failed"), ConnectionProblem("unreachable", "down")
    said = ProblemLog(remind_every=60.0)
    lines = [said.failed(auth, t) for t in (0.0, 1.0, 3.0, 7.0, 15.0, 45.0)]
    assert lines == ["authentication failed", None, None, None, None, None]
    assert said.failed(down, 50.0) == "down"  # a new kind is said at once
    assert said.failed(auth, 61.0) == "authentication failed (still failing: 8 attempts in 61s)"
    assert said.failed(auth, 90.0) is None
    assert said.succeeded(100.0) == "after 9 failed attempts in 100s"
    assert said.succeeded(101.0) is None
    assert said.failed(auth, 200.0) == "authentication failed"  # a fresh start after success


def test_backoff_doubles_to_a_cap_with_jitter() -> None:
    for attempt, base in ((1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (1000, 30.0)):
        assert 0.8 * base <= preflight.backoff(attempt) <= 1.2 * base


async def test_worker_waits_for_kafka_answering_not_ready(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A broker address nobody listens on: /readyz is 503 with the reason, /healthz 200, one
    warning for many attempts, and a stop ends the wait."""
    monkeypatch.setattr(preflight, "backoff", lambda attempt: 0.02)
    s = Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", web_port=free_port())
    state, stop = preflight.Waiting(bootstrap=s.kafka_bootstrap_servers), asyncio.Event()
    runner = await preflight.serve_probes(s, state)
    try:
        waiting = asyncio.create_task(preflight.wait_for_kafka(s, state, stop))
        while state.attempts < 5:
            await asyncio.sleep(0.02)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{s.web_port}/readyz") as resp:
                assert resp.status == 503
                body = await resp.json()
            async with http.get(f"http://127.0.0.1:{s.web_port}/healthz") as resp:
                assert resp.status == 200
        assert body["ready"] is False and body["problem"] == "unreachable"
        assert body["reason"] == "connection refused"
        stop.set()
        assert await asyncio.wait_for(waiting, 5) is None
    finally:
        await runner.cleanup()
    said = [r for r in caplog.records if r.name == "model_monitoring.preflight" and "cannot connect" in r.getMessage()]
    assert [r.getMessage() for r in said] == [f"cannot connect to Kafka at {s.kafka_bootstrap_servers}: "
                                              "connection refused"]


def handshake(files: TlsFiles, cafile: Path, server_name: str) -> None:
    """A TLS handshake between a server with the generated certificate and a client that
    trusts `cafile` and checks `server_name`; raises on failure."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.cert_file, files.key_file)
    client_ctx = ssl.create_default_context(cafile=str(cafile))
    left, right = socket.socketpair()
    with left, right:
        server = threading.Thread(target=_accept, args=(server_ctx, right), daemon=True)
        server.start()
        with client_ctx.wrap_socket(left, server_hostname=server_name) as tls:
            tls.sendall(b"x")
        server.join(5)


def _accept(ctx: ssl.SSLContext, sock: socket.socket) -> None:
    try:
        with ctx.wrap_socket(sock, server_side=True) as tls:
            tls.recv(1)
    except (ssl.SSLError, OSError):
        pass


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_server_certificate_is_trusted_through_its_ca_for_loopback_names(tmp_path: Path, name: str) -> None:
    files = write_server_tls(tmp_path)
    handshake(files, files.ca_file, name)


def test_an_unrelated_ca_does_not_trust_the_server(tmp_path: Path) -> None:
    files = write_server_tls(tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(files, write_unrelated_ca(tmp_path / "other.pem"), "127.0.0.1")


def test_scram_users_are_passed_salted(tmp_path: Path) -> None:
    cfg = SaslSslConfig(ca_file=tmp_path / "ca", cert_file=tmp_path / "c", key_file=tmp_path / "k",
                        users={"alice": "pa,ss=word"})
    flag, arg = cfg.format_arguments()
    assert flag == "--add-scram" and "pa,ss" not in arg
    mechanism, _, body = arg.partition("=[")
    fields = dict(part.split("=", 1) for part in body.rstrip("]").split(","))
    assert mechanism == "SCRAM-SHA-512" and fields["name"] == "alice" and int(fields["iterations"]) == ITERATIONS
    salt = base64.b64decode(fields["salt"].strip('"'))
    expected = hashlib.pbkdf2_hmac("sha512", b"pa,ss=word", salt, ITERATIONS)
    assert base64.b64decode(fields["saltedpassword"].strip('"')) == expected
    with pytest.raises(ValueError, match="SCRAM user name"):
        SaslSslConfig(ca_file=tmp_path, cert_file=tmp_path, key_file=tmp_path, users={"a,b": "x"})


def test_cluster_ids_never_look_like_an_option() -> None:
    assert not any(cluster_id().startswith("-") for _ in range(2000))
