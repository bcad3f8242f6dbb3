"""Service-to-service JWT verification for the model-monitoring HTTP routes.

PyJWT does all parsing and signature work; this module decides which algorithm and key a
token may use, maps PyJWT's errors onto 401/403 with a stable machine code, and turns the
claims into a :class:`ServicePrincipal` (scopes and the tenants the caller may run).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from model_monitoring.streams.jwt_keys import HMAC_ALGORITHM, load_public_key, public_key_algorithm

__all__ = [
    "DEFAULT_SCOPE",
    "AuthConfig",
    "AuthError",
    "ServicePrincipal",
    "TokenVerifier",
]

DEFAULT_SCOPE = "model-monitoring:run"
# RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32
# Far above any real service token; refuses absurd headers before any base64 work.
MAX_TOKEN_CHARS = 16_384


@dataclass(frozen=True)
class AuthConfig:
    """How the HTTP routes authenticate callers; built once from settings."""

    secret: str | None = None
    public_key_pem: str | None = None
    issuer: str | None = None
    audience: str | None = None
    scope: str = DEFAULT_SCOPE
    disabled: bool = False
    leeway_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Any) -> AuthConfig:
        """Read the JWT settings; an empty string counts as unset (never as an empty key)."""
        key_file = settings.jwt_public_key_file
        pem = None
        if key_file is not None and str(key_file).strip():
            try:
                pem = key_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(
                    f"cannot read MODEL_MONITORING_JWT_PUBLIC_KEY_FILE {key_file}: {exc.strerror}"
                ) from exc
        return cls(
            secret=settings.jwt_secret or None,
            public_key_pem=pem or None,
            issuer=settings.jwt_issuer or None,
            audience=settings.jwt_audience or None,
            scope=settings.jwt_scope or DEFAULT_SCOPE,
            disabled=bool(settings.auth_disabled),
        )

    def algorithms(self) -> list[str]:
        """The algorithms a token may use: HS256 with a secret, RS256/ES256 by the key's type."""
        allowed = []
        if self.secret:
            allowed.append(HMAC_ALGORITHM)
        if self.public_key_pem:
            allowed.append(public_key_algorithm(load_public_key(self.public_key_pem)))
        return allowed

    def describe(self) -> str:
        """One start-up log line; names the key by fingerprint, never prints the secret."""
        if self.disabled:
            return "JWT auth DISABLED (explicit setting): every request is accepted without a token"
        parts = [f"JWT auth: algorithms={','.join(self.algorithms()) or 'none configured'}"]
        if self.public_key_pem:
            der = load_public_key(self.public_key_pem).public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            parts.append(f"key_sha256={hashlib.sha256(der).hexdigest()[:16]}")
        parts.append(f"issuer={self.issuer or '-'}")
        parts.append(f"audience={self.audience or '-'}")
        parts.append(f"scope={self.scope}")
        parts.append(f"leeway={self.leeway_seconds:g}s")
        return " ".join(parts)


class AuthError(Exception):
    """A refused request: ``status`` 401 or 403, a machine ``code`` and safe ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """The JSON error body the routes answer with."""
        return {"error": self.code, "message": self.message}


def _unauthorized(code: str, message: str) -> AuthError:
    return AuthError(401, code, message)


@dataclass(frozen=True)
class ServicePrincipal:
    """The authenticated caller: its scopes and the tenants it may run (None = all)."""

    subject: str | None
    scopes: frozenset[str]
    tenant_ids: frozenset[str] | None

    def allow_tenants(self, requested: list[str] | None) -> list[str] | None:
        """The tenants a run may cover; a restricted token never yields "all" or an empty list."""
        if self.tenant_ids is None:
            return None if requested is None else list(dict.fromkeys(requested))
        if requested is None:
            if not self.tenant_ids:
                raise AuthError(403, "tenant_forbidden", "token grants no tenants")
            return sorted(self.tenant_ids)
        outside = [t for t in requested if t not in self.tenant_ids]
        if outside or not requested:
            raise AuthError(403, "tenant_forbidden", "token does not allow the requested tenants")
        return list(dict.fromkeys(requested))


def _scopes_from_claims(claims: Mapping[str, Any]) -> frozenset[str]:
    scopes: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            scopes.update(value.split())
        elif isinstance(value, list) and all(isinstance(s, str) for s in value):
            scopes.update(value)
        else:
            raise _unauthorized("invalid_token", f"token claim {name!r} must be a string or a list of strings")
    return frozenset(scopes)


def _tenants_from_claims(claims: Mapping[str, Any]) -> frozenset[str] | None:
    if "tenantIds" not in claims:
        return None
    value = claims["tenantIds"]
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise _unauthorized("invalid_token", "token claim 'tenantIds' must be a list of non-empty strings")
    return frozenset(value)


def _map_decode_error(exc: jwt.PyJWTError) -> AuthError:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return _unauthorized("token_expired", "token has expired")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return _unauthorized("token_not_yet_valid", "token is not yet valid (nbf or iat in the future)")
    if isinstance(exc, jwt.InvalidIssuerError):
        return _unauthorized("invalid_issuer", "token issuer is not accepted")
    if isinstance(exc, jwt.InvalidAudienceError):
        return _unauthorized("invalid_audience", "token audience is not accepted")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        code = {"iss": "invalid_issuer", "aud": "invalid_audience"}.get(exc.claim, "invalid_token")
        return _unauthorized(code, f"token lacks the required claim {exc.claim!r}")
    if isinstance(exc, jwt.InvalidSignatureError):
        return _unauthorized("invalid_signature", "token signature does not verify")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return _unauthorized("algorithm_not_allowed", "token algorithm is not allowed")
    # Only the exception's class name: PyJWT's texts can quote decoded content.
    return _unauthorized("invalid_token", f"token is malformed or has invalid claims ({type(exc).__name__})")


class TokenVerifier:
    """Checks ``Authorization: Bearer`` headers against one :class:`AuthConfig`."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self._keys: dict[str, Any] = {}
        if config.disabled:
            return
        if config.secret is not None:
            if len(config.secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"MODEL_MONITORING_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (RFC 7518 §3.2)"
                )
            if "-----BEGIN" in config.secret:
                raise ValueError(
                    "MODEL_MONITORING_JWT_SECRET looks like a PEM key; use MODEL_MONITORING_JWT_PUBLIC_KEY_FILE"
                )
            self._keys[HMAC_ALGORITHM] = config.secret
        if config.public_key_pem:
            public_key = load_public_key(config.public_key_pem)
            self._keys[public_key_algorithm(public_key)] = public_key
        if not self._keys:
            raise ValueError(
                "JWT auth needs MODEL_MONITORING_JWT_SECRET or MODEL_MONITORING_JWT_PUBLIC_KEY_FILE "
                "(or an explicit MODEL_MONITORING_AUTH_DISABLED=true)"
            )

    def verify(self, authorization_header: str | None) -> ServicePrincipal:
        """The caller behind the header, or :class:`AuthError` (401/403)."""
        config = self.config
        if config.disabled:
            return ServicePrincipal(subject=None, scopes=frozenset({config.scope}), tenant_ids=None)
        token = self._bearer_token(authorization_header)
        claims = self._decode(token)
        subject = claims.get("sub")
        tenants = _tenants_from_claims(claims)
        scopes = _scopes_from_claims(claims)
        if config.scope not in scopes:
            raise AuthError(403, "insufficient_scope", f"token lacks the scope {config.scope!r}")
        return ServicePrincipal(subject=subject, scopes=scopes, tenant_ids=tenants)

    @staticmethod
    def _bearer_token(header: str | None) -> str:
        if header is None or not header.strip():
            raise _unauthorized("missing_token", "Authorization header with a Bearer token is required")
        scheme, _, rest = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise _unauthorized("missing_token", "Authorization header must use the Bearer scheme")
        token = rest.strip()
        if not token or any(c.isspace() for c in token):
            raise _unauthorized("invalid_token", "Bearer credentials must be a single token")
        if len(token) > MAX_TOKEN_CHARS:
            raise _unauthorized("invalid_token", "token is too long")
        return token

    def _decode(self, token: str) -> dict[str, Any]:
        config = self.config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _unauthorized("invalid_token", "token is not a well-formed JWT") from exc
        alg = header.get("alg")
        # Refuse before decoding: alg=none, key confusion (HS256 keyed with the public key)
        # and any algorithm nobody configured never reach a verification step.
        if not isinstance(alg, str) or alg not in self._keys:
            raise _unauthorized("algorithm_not_allowed", "token algorithm is not allowed")
        try:
            return jwt.decode(
                token,
                self._keys[alg],
                algorithms=[alg],
                issuer=config.issuer,
                audience=config.audience,
                leeway=config.leeway_seconds,
                options={
                    "require": ["exp"] + (["iss"] if config.issuer else []) + (["aud"] if config.audience else []),
                    "verify_aud": config.audience is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise _map_decode_error(exc) from exc
