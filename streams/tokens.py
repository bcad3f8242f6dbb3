"""Signing service tokens, for the demo, the docs and the tests (the service only verifies)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

from model_monitoring.streams.auth import DEFAULT_SCOPE, AuthConfig
from model_monitoring.streams.jwt_keys import HMAC_ALGORITHM


def mint_token(
    config_or_secret_or_private_key: AuthConfig | str | bytes | Any,
    *,
    algorithm: str = HMAC_ALGORITHM,
    issuer: str | None = None,
    audience: str | None = None,
    scope: str | Sequence[str] | None = DEFAULT_SCOPE,
    tenant_ids: Sequence[str] | None = None,
    ttl_seconds: float = 300,
    subject: str | None = "workflow-service",
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Sign a service token (demo, docs and tests).

    With an :class:`AuthConfig` the key is its HS256 secret and issuer, audience and (when left
    at the default) scope come from the config. ``scope=None`` omits the claim; ``extra`` is
    merged last and may override any claim.
    """
    key = config_or_secret_or_private_key
    if isinstance(key, AuthConfig):
        if not key.secret or algorithm != HMAC_ALGORITHM:
            raise ValueError("minting from an AuthConfig needs its HS256 secret; pass a private key for RS256/ES256")
        issuer = issuer if issuer is not None else key.issuer
        audience = audience if audience is not None else key.audience
        scope = key.scope if scope == DEFAULT_SCOPE else scope
        key = key.secret
    now = int(time.time())
    claims: dict[str, Any] = {"iat": now, "exp": now + int(ttl_seconds), "jti": uuid.uuid4().hex}
    if subject is not None:
        claims["sub"] = subject
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    if scope is not None:
        claims["scope"] = scope if isinstance(scope, str) else list(scope)
    if tenant_ids is not None:
        claims["tenantIds"] = list(tenant_ids)
    claims.update(extra or {})
    return jwt.encode(claims, key, algorithm=algorithm)
