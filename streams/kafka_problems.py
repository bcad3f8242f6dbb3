"""Why the worker cannot talk to Kafka, as one line an operator can act on, and how often to
say it.

aiokafka reports most failures to reach a broker as "Unable to bootstrap from [...]", with the
cause only in its own log; `diagnose` names the cause from the exception of one connection
attempt (streams/preflight.py makes it): refused credentials, an untrusted or misnamed
certificate, an unreachable address. `ProblemLog` says each kind of problem once, then again
at most once a minute while it lasts, so a worker that retries for hours logs a few lines, not
one per attempt."""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass, field

from aiokafka import errors

from model_monitoring.streams.settings import Settings

# OpenSSL's X509_V_ERR_* codes for "the certificate does not name this host / address"
HOST_MISMATCH = {62, 64}
CERT_EXPIRED = {9, 10}  # not yet valid, expired
REMIND_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class ConnectionProblem:
    """A kind (stable, for metrics and tests) and the reason in words."""

    kind: str
    reason: str
    level: int = logging.ERROR  # an unreachable broker is often transient: warning


def diagnose(exc: BaseException, s: Settings) -> ConnectionProblem:
    """The problem behind one failed attempt to connect, authenticate or create the topics."""
    user = f"{s.kafka_sasl_mechanism} user {s.kafka_sasl_username!r}"
    cafile = s.kafka_ssl_cafile or "the system's default CAs"
    if isinstance(exc, errors.SaslAuthenticationFailed):
        return ConnectionProblem("authentication", f"authentication failed ({user})")
    if isinstance(exc, errors.UnsupportedSaslMechanismError | errors.IllegalSaslStateError):
        return ConnectionProblem("sasl-mechanism", f"the broker refused SASL mechanism "
                                 f"{s.kafka_sasl_mechanism}: {exc}")
    if isinstance(exc, errors.TopicAuthorizationFailedError | errors.ClusterAuthorizationFailedError
                  | errors.GroupAuthorizationFailedError):
        return ConnectionProblem("authorization", f"not authorized ({user}): {type(exc).__name__}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or str(exc)
        if exc.verify_code in HOST_MISMATCH:
            return ConnectionProblem("tls-hostname", f"TLS: the broker's certificate does not name "
                                     f"this address ({detail})")
        if exc.verify_code in CERT_EXPIRED:
            return ConnectionProblem("tls-expired", f"TLS: the broker's certificate is not valid now ({detail})")
        return ConnectionProblem("tls-untrusted", f"TLS: certificate not trusted ({detail}; trusted: {cafile})")
    if isinstance(exc, ssl.SSLError):
        return ConnectionProblem("tls", f"TLS handshake failed ({getattr(exc, 'reason', None) or exc}); is the "
                                 f"listener {s.kafka_security_protocol}?")
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return ConnectionProblem("tls-files", f"TLS: cannot read {exc.filename or 'a certificate file'}: "
                                 f"{exc.strerror or exc}")
    if isinstance(exc, ValueError):  # aiokafka's own checks of the security settings
        return ConnectionProblem("configuration", f"client configuration refused: {exc}")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionProblem("unreachable", "connection refused", logging.WARNING)
    if isinstance(exc, TimeoutError):
        return ConnectionProblem("unreachable", "timed out", logging.WARNING)
    if isinstance(exc, socket.gaierror):
        return ConnectionProblem("unreachable", f"cannot resolve the host ({exc.strerror})", logging.WARNING)
    if isinstance(exc, OSError):
        return ConnectionProblem("unreachable", f"{exc.strerror or exc}", logging.WARNING)
    if isinstance(exc, errors.KafkaConnectionError):
        return ConnectionProblem("unreachable", f"{exc} (a security protocol other than the "
                                 f"listener's, {s.kafka_security_protocol} here, ends this way too)",
                                 logging.WARNING)
    if isinstance(exc, errors.KafkaError):
        return ConnectionProblem("kafka", f"{type(exc).__name__}: {exc}")
    return ConnectionProblem("unexpected", f"{type(exc).__name__}: {exc}")


def most_telling(problems: list[ConnectionProblem]) -> ConnectionProblem:
    """Of several bootstrap addresses' problems, the one to report: a refusal (credentials,
    certificate) says more than an address that did not answer."""
    return min(problems, key=lambda p: p.kind == "unreachable")


@dataclass
class ProblemLog:
    """Which failed attempts deserve a log line: the first of each kind, then one a minute."""

    remind_every: float = REMIND_EVERY_SECONDS
    attempts: int = 0                       # consecutive failed attempts
    failing_since: float | None = None
    last_said: dict[str, float] = field(default_factory=dict)

    def failed(self, problem: ConnectionProblem, now: float) -> str | None:
        """The line to log for this failure, or None to stay quiet."""
        self.attempts += 1
        if self.failing_since is None:
            self.failing_since = now
        said = self.last_said.get(problem.kind)
        if said is None:
            self.last_said[problem.kind] = now
            return problem.reason
        if now - said >= self.remind_every:
            self.last_said[problem.kind] = now
            return (f"{problem.reason} (still failing: {self.attempts} attempts in "
                    f"{now - self.failing_since:.0f}s)")
        return None

    def succeeded(self, now: float) -> str | None:
        """After failures, the line that says they are over; then a fresh start."""
        if not self.attempts:
            return None
        since = now if self.failing_since is None else self.failing_since
        line = f"after {self.attempts} failed attempts in {now - since:.0f}s"
        self.attempts, self.failing_since, self.last_said = 0, None, {}
        return line
