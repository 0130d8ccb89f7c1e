"""OAuth 2.1 JWT bearer tokens, verified against a JWKS generated here (served from a file or loopback HTTP)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from apps.accounts.identity import AuthError
from apps.accounts.services import role_bind
from apps.accounts.tests.conftest import authenticate_sync, bearer

ISSUER = "https://auth.example.test"
AUDIENCE = "http://127.0.0.1:8000/mcp"


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks(ec_key, rsa_key) -> dict:
    ec_jwk = json.loads(ECAlgorithm.to_jwk(ec_key.public_key()))
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    return {
        "keys": [{**ec_jwk, "kid": "ec-1", "alg": "ES256", "use": "sig"}, {**rsa_jwk, "kid": "rsa-1", "use": "sig"}]
    }


@pytest.fixture
def oauth(settings, tmp_path, ec_key, rsa_key, roles):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(_jwks(ec_key, rsa_key)))
    settings.OAUTH_ISSUER = ISSUER
    settings.OAUTH_AUDIENCE = AUDIENCE
    settings.OAUTH_JWKS_URL = str(path)
    settings.OAUTH_ALGORITHMS = ["RS256", "ES256"]
    settings.OAUTH_REQUIRED_SCOPES = []
    settings.OAUTH_DEFAULT_ROLE = None
    return settings


def _token(key, *, alg: str = "ES256", kid: str = "ec-1", **claims) -> str:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u-1",
        "email": "alice@example.com",
        "iat": now,
        "exp": now + 300,
        "jti": "jti-1",
        **claims,
    }
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=alg, headers={"kid": kid})


def test_a_valid_jwt_maps_to_the_platform_user_and_their_roles(oauth, alice, ec_key):
    # given alice holds the support role
    role_bind(role="support", user=alice)
    # when she presents an access token for this resource
    principal = authenticate_sync(bearer(_token(ec_key, scope="mcp:tools other")))
    # then she is user alice via oauth, with the support grants and the token's scopes
    assert principal.id == f"user:{alice.pk}"
    assert principal.identity_source == "oauth"
    assert principal.roles == frozenset({"support"})
    assert principal.scopes == frozenset({"mcp:tools", "other"})
    assert principal.credential_id == "jti-1"
    assert principal.can_call("task.list")
    assert not principal.can_call("task.create")


def test_an_rs256_token_verifies_with_the_rsa_key(oauth, alice, rsa_key):
    principal = authenticate_sync(bearer(_token(rsa_key, alg="RS256", kid="rsa-1")))
    assert principal.user_id == alice.pk


@pytest.mark.parametrize(
    ("claims", "fragment"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"aud": "https://other.example/mcp"}, "issued for another resource"),
        ({"iss": "https://evil.example"}, "issuer is not trusted"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"exp": None}, "lacks the 'exp' claim"),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "not-yet-valid", "no-exp"],
)
def test_a_jwt_with_bad_claims_is_401(oauth, alice, ec_key, claims, fragment):
    with pytest.raises(AuthError) as caught:
        authenticate_sync(bearer(_token(ec_key, **claims)))
    assert caught.value.status == 401
    assert fragment in caught.value.message
    assert 'error="invalid_token"' in caught.value.www_authenticate


def test_a_forged_signature_is_401(oauth, alice):
    # given a token signed by an attacker's key that claims the issuer's key id
    forger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AuthError, match="signature does not verify"):
        authenticate_sync(bearer(_token(forger)))


def test_alg_none_is_401(oauth, alice):
    # given an unsigned token (alg none)
    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    unsigned = (
        b64({"alg": "none", "typ": "JWT", "kid": "ec-1"})
        + "."
        + b64({"iss": ISSUER, "aud": AUDIENCE, "sub": "u-1", "email": "alice@example.com", "exp": now + 300})
        + "."
    )
    # then it is refused for its algorithm
    with pytest.raises(AuthError, match="algorithm 'none' is not accepted"):
        authenticate_sync(bearer(unsigned))


def test_hs256_signed_with_the_public_key_is_401(oauth, alice, rsa_key):
    # given the classic algorithm-confusion attack: HMAC keyed with the issuer's public key
    from cryptography.hazmat.primitives import serialization

    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(
        json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": 2**40}).encode()
    ).rstrip(b"=")
    import hashlib
    import hmac

    signature = base64.urlsafe_b64encode(hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest()).rstrip(
        b"="
    )
    with pytest.raises(AuthError, match="algorithm 'HS256' is not accepted"):
        authenticate_sync(bearer((header + b"." + body + b"." + signature).decode()))


def test_a_missing_required_scope_is_403_naming_the_scope(oauth, alice, ec_key):
    oauth.OAUTH_REQUIRED_SCOPES = ["mcp:tools"]
    with pytest.raises(AuthError) as caught:
        authenticate_sync(bearer(_token(ec_key, scope="profile")))
    assert (caught.value.status, caught.value.code) == (403, "insufficient_scope")
    assert 'error="insufficient_scope"' in caught.value.www_authenticate
    assert 'scope="mcp:tools"' in caught.value.www_authenticate


def test_an_unknown_subject_is_403_unless_a_default_role_is_set(oauth, ec_key):
    # given no platform user with that email
    token = _token(ec_key, email="stranger@example.com", sub="s-9")
    with pytest.raises(AuthError) as caught:
        authenticate_sync(bearer(token))
    assert (caught.value.status, caught.value.code) == (403, "forbidden")
    # when a default role is configured, then the subject gets it under an oauth principal id
    oauth.OAUTH_DEFAULT_ROLE = "viewer"
    principal = authenticate_sync(bearer(token))
    assert principal.id == f"oauth:{ISSUER}#s-9"
    assert principal.kind == "oauth"
    assert principal.roles == frozenset({"viewer"})


def test_jwts_are_refused_when_oauth_is_not_configured(settings, ec_key, db):
    settings.OAUTH_ISSUER = None
    with pytest.raises(AuthError, match="OAUTH_ISSUER"):
        authenticate_sync(bearer(_token(ec_key)))


@pytest.fixture
def jwks_server(ec_key, rsa_key) -> Iterator[tuple[str, list[int]]]:
    """A JWKS endpoint on loopback, counting how often it is fetched."""
    body = json.dumps(_jwks(ec_key, rsa_key)).encode()
    hits: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(1)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", hits
    server.shutdown()
    server.server_close()


def test_the_jwks_is_fetched_over_http_and_cached(oauth, alice, ec_key, rsa_key, jwks_server):
    url, hits = jwks_server
    oauth.OAUTH_JWKS_URL = url
    oauth.TOKEN_CACHE_SECONDS = 0  # verify every time; only the key set is cached
    # when two different tokens are verified
    authenticate_sync(bearer(_token(ec_key, jti="a")))
    authenticate_sync(bearer(_token(rsa_key, alg="RS256", kid="rsa-1", jti="b")))
    # then the key set was fetched once
    assert len(hits) == 1
