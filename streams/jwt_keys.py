"""The public keys service tokens are verified with, and the one algorithm each allows: RS256
for RSA of at least 2048 bits, ES256 for EC P-256 (a shared secret is HS256). The algorithm
comes from the key, never from the token, so a token cannot pick a weaker one."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

HMAC_ALGORITHM = "HS256"
MIN_RSA_BITS = 2048


def load_public_key(pem: str) -> Any:
    """Parse a PEM public key (or an X.509 certificate carrying one)."""
    data = pem.encode()
    try:
        return serialization.load_pem_public_key(data)
    except ValueError:
        pass
    try:
        from cryptography import x509

        return x509.load_pem_x509_certificate(data).public_key()
    except ValueError as exc:
        raise ValueError("JWT public key is not a PEM public key or certificate") from exc


def public_key_algorithm(key: Any) -> str:
    """The one JWS algorithm a public key may verify; refuses weak or unsupported keys."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"JWT RSA public key has {key.key_size} bits; at least {MIN_RSA_BITS} required")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"JWT EC public key uses curve {key.curve.name}; only P-256 (ES256) is supported")
        return "ES256"
    raise ValueError(f"JWT public key type {type(key).__name__} is not supported (RSA or EC P-256 only)")
