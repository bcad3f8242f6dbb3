"""Throwaway TLS material for a broker on the loopback: a CA, and a server certificate it signs
for 127.0.0.1 and localhost, written as PEM files (what Kafka's PEM keystore and Python's
`ssl` both read). For tests and local trials only: the keys are unencrypted on disk."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TlsFiles:
    """A CA certificate, and a server certificate (leaf, then the CA) with its PKCS#8 key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "model-monitoring tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def new_ca(common_name: str, days: int = 2) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign server certificates (and nothing under it may sign)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _validity(x509.CertificateBuilder(), days).subject_name(_name(common_name)).issuer_name(
        _name(common_name)).public_key(key.public_key()).serial_number(x509.random_serial_number())
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).add_extension(
        x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                      key_encipherment=False, data_encipherment=False, key_agreement=False,
                      encipher_only=False, decipher_only=False), critical=True).add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return key, builder.sign(key, hashes.SHA256())


def new_server_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                    hosts: Sequence[str] = LOOPBACK_NAMES, days: int = 2
                    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server certificate for `hosts` (IP addresses become IP SANs, the rest DNS SANs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    builder = _validity(x509.CertificateBuilder(), days).subject_name(_name(hosts[0])).issuer_name(
        ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
    builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True).add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def write_server_tls(directory: Path, hosts: Sequence[str] = LOOPBACK_NAMES) -> TlsFiles:
    """A fresh CA and a server certificate it signed, as PEM files in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = new_ca("model-monitoring test CA")
    key, cert = new_server_cert(ca_key, ca_cert, hosts)
    files = TlsFiles(ca_file=directory / "ca.pem", cert_file=directory / "server.pem",
                     key_file=directory / "server.key")
    files.ca_file.write_bytes(_pem(ca_cert))
    files.cert_file.write_bytes(_pem(cert) + _pem(ca_cert))
    files.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    files.key_file.chmod(0o600)
    return files


def write_unrelated_ca(path: Path) -> Path:
    """A CA certificate that signed nothing: a client trusting only it must refuse the server."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_pem(new_ca("an unrelated CA")[1]))
    return path
