"""Service JWT verification: good tokens of each family, and the attacks of issue 6 scenario 7."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from types import SimpleNamespace

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

import model_monitoring.streams.auth
from model_monitoring.streams.auth import AuthConfig, AuthError, ServicePrincipal, TokenVerifier
from model_monitoring.streams.tokens import mint_token

SECRET = "s3cret-for-unit-tests-only-0123456789abcdef"
ISSUER = "https://workflow.internal"
AUDIENCE = "model-monitoring"
SCOPE = "model-monitoring:run"


def _pem(private_key) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def hs_verifier() -> TokenVerifier:
    return TokenVerifier(AuthConfig(secret=SECRET, issuer=ISSUER, audience=AUDIENCE))


@pytest.fixture
def rs_verifier(rsa_key) -> TokenVerifier:
    return TokenVerifier(AuthConfig(public_key_pem=_pem(rsa_key), issuer=ISSUER, audience=AUDIENCE))


def _hs(**kwargs) -> str:
    kwargs.setdefault("issuer", ISSUER)
    kwargs.setdefault("audience", AUDIENCE)
    return mint_token(SECRET, **kwargs)


def _refused(verifier: TokenVerifier, header: str | None, status: int, code: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        verifier.verify(header)
    assert (info.value.status, info.value.code) == (status, code), info.value
    return info.value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_signed_hs256(claims: dict, key: bytes) -> str:
    """HS256 assembled by hand, so the attack is not stopped by PyJWT's own refusal to encode it."""
    signing_input = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + _b64(json.dumps(claims).encode())
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def _claims(**overrides) -> dict:
    now = int(time.time())
    return {"sub": "attacker", "iss": ISSUER, "aud": AUDIENCE, "scope": SCOPE, "iat": now, "exp": now + 300} | overrides


def test_project_module_is_imported():
    assert Path(model_monitoring.streams.auth.__file__).resolve().is_relative_to(Path(__file__).resolve().parents[2])


# --- good tokens -------------------------------------------------------------------------


def test_good_hs256_token(hs_verifier):
    principal = hs_verifier.verify("Bearer " + _hs())
    assert principal == ServicePrincipal(subject="workflow-service", scopes=frozenset({SCOPE}), tenant_ids=None)


def test_good_rs256_token(rs_verifier, rsa_key):
    token = mint_token(rsa_key, algorithm="RS256", issuer=ISSUER, audience=AUDIENCE, subject="svc-a")
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    principal = rs_verifier.verify(f"Bearer {token}")
    assert principal.subject == "svc-a" and SCOPE in principal.scopes


def test_good_es256_token(ec_key):
    verifier = TokenVerifier(AuthConfig(public_key_pem=_pem(ec_key), audience=AUDIENCE))
    token = mint_token(ec_key, algorithm="ES256", audience=AUDIENCE, tenant_ids=["t1"])
    assert verifier.verify(f"Bearer {token}").tenant_ids == frozenset({"t1"})


def test_scheme_is_case_insensitive(hs_verifier):
    assert hs_verifier.verify("bearer " + _hs()).subject == "workflow-service"
    assert hs_verifier.verify("BEARER  " + _hs()).subject == "workflow-service"


def test_expiry_within_leeway_is_accepted(hs_verifier):
    hs_verifier.verify("Bearer " + _hs(extra={"exp": int(time.time()) - 5}))


def test_both_families_each_with_its_own_key(rsa_key):
    verifier = TokenVerifier(AuthConfig(secret=SECRET, public_key_pem=_pem(rsa_key)))
    assert verifier.config.algorithms() == ["HS256", "RS256"]
    verifier.verify("Bearer " + mint_token(SECRET))
    verifier.verify("Bearer " + mint_token(rsa_key, algorithm="RS256"))
    # The public key is never an HMAC key, even though HS256 is allowed here.
    forged = _hand_signed_hs256(_claims(), _pem(rsa_key).encode())
    _refused(verifier, f"Bearer {forged}", 401, "invalid_signature")


def test_mint_from_config_carries_its_issuer_audience_and_scope():
    config = AuthConfig(secret=SECRET, issuer=ISSUER, audience=AUDIENCE, scope="mm:custom")
    principal = TokenVerifier(config).verify("Bearer " + mint_token(config))
    assert principal.scopes == frozenset({"mm:custom"})


# --- time, issuer, audience ---------------------------------------------------------------


def test_expired(hs_verifier):
    _refused(hs_verifier, "Bearer " + _hs(extra={"exp": int(time.time()) - 120}), 401, "token_expired")


def test_not_yet_valid(hs_verifier):
    _refused(hs_verifier, "Bearer " + _hs(extra={"nbf": int(time.time()) + 600}), 401, "token_not_yet_valid")


def test_issued_in_the_future(hs_verifier):
    _refused(hs_verifier, "Bearer " + _hs(extra={"iat": int(time.time()) + 600}), 401, "token_not_yet_valid")


def test_missing_exp(hs_verifier):
    token = jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, SECRET, algorithm="HS256")
    _refused(hs_verifier, f"Bearer {token}", 401, "invalid_token")


def test_wrong_issuer(hs_verifier):
    _refused(hs_verifier, "Bearer " + _hs(issuer="https://evil.example"), 401, "invalid_issuer")


def test_missing_issuer_when_configured(hs_verifier):
    token = mint_token(SECRET, audience=AUDIENCE)
    _refused(hs_verifier, f"Bearer {token}", 401, "invalid_issuer")


def test_wrong_audience(hs_verifier):
    _refused(hs_verifier, "Bearer " + _hs(audience="billing"), 401, "invalid_audience")


def test_missing_audience_when_configured(hs_verifier):
    token = mint_token(SECRET, issuer=ISSUER)
    _refused(hs_verifier, f"Bearer {token}", 401, "invalid_audience")


def test_issuer_and_audience_unchecked_when_not_configured():
    verifier = TokenVerifier(AuthConfig(secret=SECRET))
    verifier.verify("Bearer " + mint_token(SECRET, issuer="anyone", audience="anything"))


# --- algorithm attacks --------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(hs_verifier, alg):
    unsigned = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." + _b64(json.dumps(_claims()).encode()) + "."
    _refused(hs_verifier, f"Bearer {unsigned}", 401, "algorithm_not_allowed")


def test_alg_none_built_by_pyjwt_is_refused(rs_verifier):
    unsigned = jwt.encode(_claims(), None, algorithm="none")
    _refused(rs_verifier, f"Bearer {unsigned}", 401, "algorithm_not_allowed")


def test_key_confusion_hs256_signed_with_the_rsa_public_key(rs_verifier, rsa_key):
    forged = _hand_signed_hs256(_claims(), _pem(rsa_key).encode())
    _refused(rs_verifier, f"Bearer {forged}", 401, "algorithm_not_allowed")


def test_rs384_when_only_rs256_configured(rs_verifier, rsa_key):
    token = mint_token(rsa_key, algorithm="RS384", issuer=ISSUER, audience=AUDIENCE)
    _refused(rs_verifier, f"Bearer {token}", 401, "algorithm_not_allowed")


def test_es256_when_only_rs256_configured(rs_verifier, ec_key):
    token = mint_token(ec_key, algorithm="ES256", issuer=ISSUER, audience=AUDIENCE)
    _refused(rs_verifier, f"Bearer {token}", 401, "algorithm_not_allowed")


def test_rs256_signed_by_another_key(rs_verifier):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = mint_token(other, algorithm="RS256", issuer=ISSUER, audience=AUDIENCE)
    _refused(rs_verifier, f"Bearer {token}", 401, "invalid_signature")


def test_wrong_secret(hs_verifier):
    token = mint_token("another-secret-that-is-long-enough-0123456789", issuer=ISSUER, audience=AUDIENCE)
    _refused(hs_verifier, f"Bearer {token}", 401, "invalid_signature")


def test_tampered_payload(hs_verifier):
    header, _, signature = _hs().split(".")
    payload = _b64(json.dumps(_claims(tenantIds=["someone-else"])).encode())
    _refused(hs_verifier, f"Bearer {header}.{payload}.{signature}", 401, "invalid_signature")


# --- header shape -------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(hs_verifier, header):
    _refused(hs_verifier, header, 401, "missing_token")


def test_basic_scheme(hs_verifier):
    _refused(hs_verifier, "Basic " + base64.b64encode(b"user:pass").decode(), 401, "missing_token")


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer a b"])
def test_bearer_without_one_token(hs_verifier, header):
    _refused(hs_verifier, header, 401, "invalid_token")


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "...", "eyJhbGciOiJIUzI1NiJ9.%%%.abc", "x" * 20_000])
def test_garbage_token(hs_verifier, token):
    _refused(hs_verifier, f"Bearer {token}", 401, "invalid_token")


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=300), st.text(max_size=300).map(lambda s: "Bearer " + s)))
def test_arbitrary_headers_only_ever_raise_401(header):
    verifier = TokenVerifier(AuthConfig(secret=SECRET))
    with pytest.raises(AuthError) as info:
        verifier.verify(header)
    assert info.value.status == 401


# --- scope --------------------------------------------------------------------------------


def test_missing_scope(hs_verifier):
    _refused(hs_verifier, "Bearer " + _hs(scope=None), 403, "insufficient_scope")


def test_wrong_scope(hs_verifier):
    _refused(hs_verifier, "Bearer " + _hs(scope="model-monitoring:read other"), 403, "insufficient_scope")


@pytest.mark.parametrize(
    "claims",
    [{"scope": "openid model-monitoring:run"}, {"scope": ["a", SCOPE]}, {"scp": [SCOPE]}, {"scp": "x " + SCOPE}],
)
def test_scope_forms(hs_verifier, claims):
    token = _hs(scope=None, extra=claims)
    assert SCOPE in hs_verifier.verify(f"Bearer {token}").scopes


@pytest.mark.parametrize("bad", [7, {"a": SCOPE}, [SCOPE, 3]])
def test_scope_of_a_wrong_type(hs_verifier, bad):
    _refused(hs_verifier, "Bearer " + _hs(scope=None, extra={"scope": bad}), 401, "invalid_token")


# --- tenants ------------------------------------------------------------------------------


def test_tenant_claim_limits_allow_tenants(hs_verifier):
    principal = hs_verifier.verify("Bearer " + _hs(tenant_ids=["t3", "t1", "t2"]))
    assert principal.tenant_ids == frozenset({"t1", "t2", "t3"})
    assert principal.allow_tenants(["t2", "t1"]) == ["t2", "t1"]
    assert principal.allow_tenants(None) == ["t1", "t2", "t3"]
    with pytest.raises(AuthError) as info:
        principal.allow_tenants(["t1", "t4"])
    assert (info.value.status, info.value.code) == (403, "tenant_forbidden")


def test_unrestricted_token_allows_any_tenants(hs_verifier):
    principal = hs_verifier.verify("Bearer " + _hs())
    assert principal.allow_tenants(None) is None
    assert principal.allow_tenants(["a", "b", "a"]) == ["a", "b"]


def test_empty_tenant_claim_grants_nothing(hs_verifier):
    principal = hs_verifier.verify("Bearer " + _hs(tenant_ids=[]))
    for requested in (None, [], ["t1"]):
        with pytest.raises(AuthError) as info:
            principal.allow_tenants(requested)
        assert info.value.status == 403


@pytest.mark.parametrize("bad", ["t1", 5, {"t1": True}, [1, 2], ["t1", None], [""]])
def test_tenant_claim_of_a_wrong_type(hs_verifier, bad):
    _refused(hs_verifier, "Bearer " + _hs(extra={"tenantIds": bad}), 401, "invalid_token")


# --- configuration ------------------------------------------------------------------------


def test_disabled_config_allows_everything():
    config = AuthConfig(disabled=True)
    principal = TokenVerifier(config).verify(None)
    assert principal.tenant_ids is None and SCOPE in principal.scopes
    assert principal.allow_tenants(None) is None
    assert "DISABLED" in config.describe()


def test_neither_secret_nor_key_raises():
    with pytest.raises(ValueError):
        TokenVerifier(AuthConfig())
    with pytest.raises(ValueError):
        TokenVerifier(AuthConfig(secret="", public_key_pem=""))


@pytest.mark.parametrize("secret", ["short", "x" * 31])
def test_short_secret_raises(secret):
    with pytest.raises(ValueError, match="32 bytes"):
        TokenVerifier(AuthConfig(secret=secret))


def test_pem_as_secret_raises(rsa_key):
    with pytest.raises(ValueError):
        TokenVerifier(AuthConfig(secret=_pem(rsa_key)))


def test_algorithms_by_key_type(rsa_key, ec_key):
    assert AuthConfig(secret=SECRET).algorithms() == ["HS256"]
    assert AuthConfig(public_key_pem=_pem(rsa_key)).algorithms() == ["RS256"]
    assert AuthConfig(public_key_pem=_pem(ec_key)).algorithms() == ["ES256"]
    assert AuthConfig(secret=SECRET, public_key_pem=_pem(ec_key)).algorithms() == ["HS256", "ES256"]


def test_unsupported_keys_raise():
    with pytest.raises(ValueError, match="P-256"):
        AuthConfig(public_key_pem=_pem(ec.generate_private_key(ec.SECP384R1()))).algorithms()
    with pytest.raises(ValueError, match="2048"):
        AuthConfig(public_key_pem=_pem(rsa.generate_private_key(65537, 1024))).algorithms()
    with pytest.raises(ValueError):
        TokenVerifier(AuthConfig(public_key_pem="-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"))


def test_describe_names_no_secret(rsa_key):
    line = AuthConfig(secret=SECRET, public_key_pem=_pem(rsa_key), issuer=ISSUER).describe()
    assert SECRET not in line and "BEGIN" not in line and "\n" not in line
    assert "HS256" in line and "RS256" in line and ISSUER in line and "DISABLED" not in line


def test_from_settings_reads_the_key_file(tmp_path, rsa_key):
    key_file = tmp_path / "jwt.pub"
    key_file.write_text(_pem(rsa_key))
    settings_ = SimpleNamespace(
        jwt_secret="", jwt_public_key_file=key_file, jwt_issuer=ISSUER, jwt_audience="",
        jwt_scope=SCOPE, auth_disabled=False,
    )
    config = AuthConfig.from_settings(settings_)
    assert config.secret is None and config.audience is None and config.issuer == ISSUER
    assert config.algorithms() == ["RS256"]
    settings_.jwt_public_key_file = tmp_path / "missing.pub"
    with pytest.raises(ValueError, match="missing.pub"):
        AuthConfig.from_settings(settings_)


# --- no token in error text ---------------------------------------------------------------


def test_error_messages_never_contain_the_token(hs_verifier, rsa_key):
    now = int(time.time())
    tokens = [
        _hs(extra={"exp": now - 120}),
        _hs(issuer="https://evil.example"),
        _hs(audience="billing"),
        _hs(scope=None),
        _hs(extra={"tenantIds": "secret-tenant-name"}),
        _hs(extra={"sub": 12345}),
        mint_token("another-secret-that-is-long-enough-0123456789"),
        _hand_signed_hs256(_claims(), _pem(rsa_key).encode()),
        jwt.encode(_claims(), None, algorithm="none"),
        "not-a-jwt-but-sensitive-looking",
    ]
    for token in tokens:
        with pytest.raises(AuthError) as info:
            hs_verifier.verify(f"Bearer {token}")
        err = info.value
        for text in (err.message, str(err), json.dumps(err.to_dict())):
            assert token not in text
            assert all(part not in text for part in token.split(".") if len(part) > 8)
        assert "secret-tenant-name" not in err.message
