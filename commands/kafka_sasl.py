"""A SASL_SSL listener for `KafkaBroker`: TLS with the server's key and certificate chain from
PEM files, clients authenticated with SCRAM-SHA-512. The PLAINTEXT listener stays for the
broker's own (inter-broker and controller) traffic.

Kafka keeps SCRAM credentials in its KRaft metadata log, so users are created when the log
directory is formatted (`kafka-storage format --add-scram`), i.e. on the broker's first start in
a data directory. They are passed as salt and salted password computed here, not as the
password: the format tool splits its argument on commas and does not unquote them, so a
password holding a comma could not be passed in clear."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LISTENER = "SASL_SSL"
MECHANISM = "SCRAM-SHA-512"
ITERATIONS = 8192  # Kafka's minimum for SCRAM-SHA-512 is 4096
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


@dataclass(frozen=True)
class SaslSslConfig:
    """The listener's port (0: a free one), the server's TLS files and the SCRAM users."""

    ca_file: Path                 # the CA that signed cert_file (what clients trust)
    cert_file: Path               # the server certificate, then its chain, PEM
    key_file: Path                # the server's private key, PKCS#8 PEM, unencrypted
    users: Mapping[str, str]      # SCRAM-SHA-512 user name -> password
    port: int = 0

    def __post_init__(self) -> None:
        for name in self.users:
            if not name or any(c in name for c in ',="[]'):
                raise ValueError(f"SCRAM user name {name!r}: empty, or holds one of , = \" [ ]")

    def broker_config(self, data_dir: Path) -> dict[str, str]:
        """server.properties entries, scoped to the listener where Kafka allows it."""
        keystore = keystore_path(data_dir)
        scope = f"listener.name.{LISTENER.lower()}."
        return {
            "sasl.enabled.mechanisms": MECHANISM,
            f"{scope}{MECHANISM.lower()}.sasl.jaas.config": SCRAM_LOGIN,
            f"{scope}ssl.keystore.type": "PEM",
            f"{scope}ssl.keystore.location": str(keystore),
            f"{scope}ssl.client.auth": "none",
        }

    def write_keystore(self, data_dir: Path) -> Path:
        """Kafka's PEM keystore is one file: the private key, then the certificate chain."""
        path = keystore_path(data_dir)
        path.write_bytes(self.key_file.read_bytes().rstrip() + b"\n" + self.cert_file.read_bytes())
        path.chmod(0o600)
        return path

    def format_arguments(self) -> list[str]:
        """`--add-scram` arguments of `kafka-storage format`, one per user."""
        args: list[str] = []
        for name, password in sorted(self.users.items()):
            salt = os.urandom(16)
            salted = scram_salted_password(password, salt, ITERATIONS)
            args += ["--add-scram",
                     f'{MECHANISM}=[name={name},salt="{_b64(salt)}",iterations={ITERATIONS},'
                     f'saltedpassword="{_b64(salted)}"]']
        return args


def keystore_path(data_dir: Path) -> Path:
    return data_dir / "sasl_ssl-keystore.pem"


def scram_salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """RFC 5802's SaltedPassword = Hi(password, salt, i), PBKDF2 with HMAC-SHA-512 here; Kafka
    takes the password's UTF-8 bytes as they are (no SASLprep)."""
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
