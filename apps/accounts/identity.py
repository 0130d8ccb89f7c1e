"""Who is calling: turn request headers into a Principal, or refuse with the right status and challenge.

Order: a bearer credential (API token `mcpp_…` or an OAuth 2.1 JWT) when one is sent; otherwise Tailnet identity
headers, believed only from `TAILNET_TRUSTED_PROXIES`; otherwise, for a peer connecting from a tailnet address,
tailscaled's LocalAPI `whois` (when `TAILSCALE_LOCALAPI_SOCKET` is set). Tailnet logins must match
`TAILNET_ALLOWED_LOGINS` and a platform user. A verified credential is reused for `TOKEN_CACHE_SECONDS`
without touching the database (the gateway's hot path), so a revocation takes effect within that time.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import re
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import jwt
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from apps.accounts import tokens
from apps.accounts.models import ApiToken
from apps.accounts.principal import Principal
from apps.accounts.selectors import (
    principal_for_roles,
    principal_for_service_account,
    principal_for_user,
    user_for_login,
)
from apps.common.db import releasing

log = logging.getLogger(__name__)

LAST_USED_RESOLUTION = timedelta(seconds=60)  # last_used_at is written at most once a minute per token
_CACHE_MAX = 20_000
_JWKS_MIN_REFETCH_SECONDS = 30.0
_JWT_LEEWAY_SECONDS = 30


class AuthError(Exception):
    """Authentication failed (401), the caller may not proceed (403), or its address failed too often (429).
    `www_authenticate` goes in the header."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        www_authenticate: str | None = None,
        *,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.www_authenticate = www_authenticate
        self.retry_after_s = retry_after_s  # 429: when the client may try again
        # True when the credential can never become valid (unknown or malformed): safe to refuse from memory.
        self.permanent = False

    def __repr__(self) -> str:
        return f"AuthError({self.status}, {self.code!r}, {self.message!r})"


# ------------------------------------------------------------------------------------------ challenges


def resource_metadata_url() -> str:
    return f"{settings.PUBLIC_BASE_URL}/.well-known/oauth-protected-resource/mcp"


_UNSAFE = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")  # RFC 6750 §3: no quotes, backslashes or non-ASCII


def challenge(*, error: str | None = None, description: str | None = None, scope: str | None = None) -> str:
    """A `WWW-Authenticate: Bearer …` value naming the protected-resource metadata (RFC 9728 §5.1)."""
    parts = []
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{_UNSAFE.sub("?", description)[:300]}"')
    scope = scope if scope is not None else " ".join(settings.OAUTH_REQUIRED_SCOPES)
    if scope:
        parts.append(f'scope="{_UNSAFE.sub("", scope)}"')
    parts.append(f'resource_metadata="{resource_metadata_url()}"')
    return "Bearer " + ", ".join(parts)


def unauthorized(message: str, *, code: str = "invalid_token") -> AuthError:
    """401 for a missing, malformed, unknown, expired or revoked credential."""
    error = None if code == "unauthorized" else "invalid_token"
    return AuthError(401, code, message, challenge(error=error, description=message if error else None))


def _permanent(error: AuthError) -> AuthError:
    error.permanent = True
    return error


def insufficient_scope(scope: str, message: str | None = None) -> AuthError:
    """403 naming every scope the operation needs (space-separated), for the gateway and for JWT checks."""
    text = message or f"this request needs the scope(s): {scope}"
    return AuthError(
        403, "insufficient_scope", text, challenge(error="insufficient_scope", description=text, scope=scope)
    )


def forbidden(message: str) -> AuthError:
    return AuthError(403, "forbidden", message, None)


# --------------------------------------------------------------------------------------------- cache

_cache: dict[str, tuple[float, Principal]] = {}


def identity_cache_clear() -> None:
    """Forget every verified and every failed credential of this process (tests; a local revocation)."""
    _cache.clear()
    _failed.clear()


def _remember(key: str, principal: Principal, ttl: float) -> None:
    if ttl <= 0:
        return
    if len(_cache) >= _CACHE_MAX:
        now = time.monotonic()
        for stale in [k for k, (until, _) in _cache.items() if until <= now]:
            del _cache[stale]
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
    _cache[key] = (time.monotonic() + ttl, principal)


_inflight: dict[str, asyncio.Task[Principal]] = {}


async def _verify_once(key: str, verify: Callable[[], Awaitable[tuple[Principal, float]]]) -> Principal:
    """Verify a credential and cache the result; concurrent requests with the same credential share one
    verification (when a popular token's cache entry lapses, the database sees one query, not one per request)."""
    loop = asyncio.get_running_loop()
    pending = _inflight.get(key)
    if pending is not None and pending.get_loop() is loop:
        return await asyncio.shield(pending)

    async def run() -> Principal:
        principal, ttl = await verify()
        _remember(key, principal, ttl)
        return principal

    task = loop.create_task(run())
    _inflight[key] = task
    try:
        return await asyncio.shield(task)
    finally:
        if _inflight.get(key) is task:
            del _inflight[key]


# -------------------------------------------------------------------------------------- entry point


# ---------------------------------------------------------------------------------- failed credentials
#
# A credential that can never become valid (unknown or malformed) is answered from memory for AUTH_FAILURE_CACHE_S
# (no database lookup); revoked, expired or deactivated ones are checked again each time, since staff can undo the
# last. A remote (non-loopback) address that sent MCP_AUTH_FAILURES_PER_MINUTE failing credentials in the current
# minute is refused (429) before anything is verified, in every gateway replica (the count is in the shared cache).
# Valid credentials touch neither: they are answered from the positive cache above.

_failed: dict[str, tuple[float, AuthError]] = {}


def _failed_key(authorization: str) -> str:
    """Failed credentials are remembered by digest: whatever size a caller sends, an entry stays 64 bytes."""
    return hashlib.sha256(authorization.encode()).hexdigest()


def _failure_key(client_host: str | None) -> str:
    return f"mcpplat:authfail:{client_host or 'unknown'}:{int(time.time() // 60)}"


def _limited(client_host: str | None) -> bool:
    """Loopback callers are local processes (and every test harness): the failure limit is for remote addresses."""
    if settings.MCP_AUTH_FAILURES_PER_MINUTE <= 0:
        return False
    if not client_host:
        return True
    try:
        return not ipaddress.ip_address(client_host).is_loopback
    except ValueError:
        return True


async def _host_refused(client_host: str | None) -> AuthError | None:
    limit = settings.MCP_AUTH_FAILURES_PER_MINUTE
    if not _limited(client_host):
        return None
    try:
        failures = await cache.aget(_failure_key(client_host)) or 0
    except Exception:  # noqa: BLE001 - the cache (Redis) down must not lock everyone out; the rate limits still apply
        return None
    if failures < limit:
        return None
    retry_after = 60 - int(time.time() % 60)
    return AuthError(
        429,
        "too_many_failed_authentications",
        f"{failures} failed authentications from {client_host or 'this client'} this minute: retry in {retry_after} s "
        "with a valid credential",
        retry_after_s=retry_after,
    )


async def _failure_note(authorization: str, client_host: str | None, error: AuthError) -> None:
    if error.permanent:
        if len(_failed) >= _CACHE_MAX:
            _failed.clear()
        _failed[_failed_key(authorization)] = (time.monotonic() + settings.AUTH_FAILURE_CACHE_S, error)
    if not _limited(client_host):
        return
    key = _failure_key(client_host)
    try:
        await cache.aadd(key, 0, 120)
        await cache.aincr(key)
    except Exception:  # noqa: BLE001 - counting is best effort (see _host_refused)
        log.warning("could not count a failed authentication from %s", client_host)


async def authenticate(headers: Mapping[str, str], *, client_host: str | None) -> Principal:
    """The caller of a request (header names lower-cased), or AuthError (401/403/429) saying why not."""
    authorization = headers.get("authorization")
    if authorization is not None:
        hit = _cache.get(authorization)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        failed = _failed.get(_failed_key(authorization))
        if failed is not None and failed[0] > time.monotonic():
            known = failed[1]  # a fresh exception each time: re-raising one instance would grow its traceback
            raise AuthError(known.status, known.code, known.message, known.www_authenticate)
        if (refused := await _host_refused(client_host)) is not None:
            raise refused
        try:
            return await _authenticate_bearer(authorization)
        except AuthError as exc:
            if exc.status == 401:
                await _failure_note(authorization, client_host, exc)
            raise
    login = headers.get("tailscale-user-login")
    if login is not None:
        return await _tailnet_principal(login, client_host)
    if settings.TAILSCALE_LOCALAPI_SOCKET and client_host and is_tailnet_address(client_host):
        return await _whois_principal(client_host)
    raise unauthorized(
        "authentication required: send 'Authorization: Bearer <token>' (create one with "
        "`manage.py create_api_token` or in the admin)",
        code="unauthorized",
    )


async def _authenticate_bearer(authorization: str) -> Principal:
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise _permanent(
            unauthorized(
                "the Authorization header must be 'Bearer <token>' (an mcpp_ API token or an OAuth access token)"
            )
        )
    if credential.startswith(tokens.PREFIX):
        # Thread-sensitive (one thread, as Django runs sync code for a request); `releasing` hands the thread's
        # connection back to the pool, so one broken by a PostgreSQL restart is not kept (apps/common/db.py).
        return await _verify_once(authorization, lambda: sync_to_async(releasing(_api_token_principal))(credential))
    if credential.count(".") == 2:
        return await _verify_once(authorization, lambda: _jwt_principal(credential))
    raise _permanent(unauthorized("the bearer token is neither an mcpplat API token (mcpp_…) nor a JWT"))


# ---------------------------------------------------------------------------------------- API tokens


def _api_token_principal(credential: str) -> tuple[Principal, float]:
    parsed = tokens.parse(credential)
    if parsed is None:
        raise _permanent(unauthorized("malformed API token: expected mcpp_<12 characters>_<secret>"))
    token = ApiToken.objects.select_related("user", "service_account").filter(public_id=parsed.public_id).first()
    if token is None or not tokens.secret_matches(parsed.secret, token.secret_hash):
        raise _permanent(
            unauthorized(f"unknown API token mcpp_{parsed.public_id}: check it was copied whole, or create a new one")
        )
    now = timezone.now()
    if token.revoked_at is not None:
        raise unauthorized(f"API token {token.prefix} was revoked at {token.revoked_at:%Y-%m-%d %H:%M} UTC")
    if token.expires_at is not None and token.expires_at <= now:
        raise unauthorized(f"API token {token.prefix} expired at {token.expires_at:%Y-%m-%d %H:%M} UTC")
    if token.user is not None:
        if not token.user.is_active:
            raise unauthorized(f"the owner of API token {token.prefix} is deactivated")
        principal = principal_for_user(token.user, identity_source="api_token", credential_id=token.prefix)
    else:
        account = token.service_account
        assert account is not None  # noqa: S101  (the table's check constraint)
        if not account.is_active:
            raise unauthorized(f"service account {account.name} of API token {token.prefix} is deactivated")
        principal = principal_for_service_account(account, credential_id=token.prefix)
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    ttl = float(settings.TOKEN_CACHE_SECONDS)
    if token.expires_at is not None:
        ttl = min(ttl, (token.expires_at - now).total_seconds())
    return principal, ttl


# --------------------------------------------------------------------------------------- OAuth / JWT


class _Jwks:
    """The issuer's signing keys, fetched from a URL or read from a file, reused for OAUTH_JWKS_CACHE_SECONDS."""

    def __init__(self) -> None:
        self.source: str | None = None
        self.keys: dict[str | None, jwt.PyJWK] = {}
        self.fetched_at = 0.0

    async def key(self, kid: str | None) -> jwt.PyJWK:
        source: str = settings.OAUTH_JWKS_URL or ""
        fresh = time.monotonic() - self.fetched_at < settings.OAUTH_JWKS_CACHE_SECONDS
        if source != self.source or not fresh or (kid not in self.keys and self._may_refetch()):
            await self._load(source)  # concurrent refreshes may fetch twice: harmless, and no cross-loop lock
        key = self.keys.get(kid) or (next(iter(self.keys.values())) if kid is None and len(self.keys) == 1 else None)
        if key is None:
            raise unauthorized(f"the JWT's signing key (kid={kid!r}) is not in the issuer's JWKS")
        return key

    def _may_refetch(self) -> bool:
        return time.monotonic() - self.fetched_at >= _JWKS_MIN_REFETCH_SECONDS

    async def _load(self, source: str) -> None:
        try:
            document = await asyncio.to_thread(_read_jwks, source)
            keyset = jwt.PyJWKSet.from_dict(document)
        except (OSError, ValueError, jwt.PyJWKSetError) as exc:
            log.error("cannot load the JWKS from %s: %s", source, exc)
            if self.source == source and self.keys:
                return  # keep serving with the keys we have
            raise AuthError(
                401, "invalid_token", f"cannot load the issuer's signing keys (OAUTH_JWKS_URL): {exc}", challenge()
            ) from None
        self.keys = {k.key_id: k for k in keyset.keys}
        self.source = source
        self.fetched_at = time.monotonic()


def _read_jwks(source: str) -> Any:
    if source.startswith(("https://", "http://")):
        with urllib.request.urlopen(source, timeout=5) as response:  # noqa: S310  (scheme checked above)
            return json.loads(response.read())
    path = source.removeprefix("file://")
    with open(path, "rb") as handle:
        return json.loads(handle.read())


_jwks = _Jwks()


def jwks_cache_clear() -> None:
    global _jwks  # noqa: PLW0603
    _jwks = _Jwks()


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list):
        return frozenset(str(s) for s in raw)
    return frozenset()


async def _jwt_principal(token: str) -> tuple[Principal, float]:
    if not settings.OAUTH_ISSUER:
        raise unauthorized("OAuth bearer tokens are not accepted here (no OAUTH_ISSUER): use an mcpp_ API token")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise unauthorized("malformed JWT: its header cannot be decoded") from None
    algorithm = header.get("alg")
    if algorithm not in settings.OAUTH_ALGORITHMS:
        raise unauthorized(
            f"JWT algorithm {algorithm!r} is not accepted: use one of {', '.join(settings.OAUTH_ALGORITHMS)}"
        )
    key = await _jwks.key(header.get("kid"))
    if "alg" in getattr(key, "_jwk_data", {}) and key.algorithm_name != algorithm:
        raise unauthorized(f"JWT algorithm {algorithm!r} does not match its key's algorithm {key.algorithm_name!r}")
    try:
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[algorithm],
            audience=settings.OAUTH_AUDIENCE,
            issuer=settings.OAUTH_ISSUER,
            leeway=_JWT_LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("the access token has expired: get a new one from the authorization server") from None
    except jwt.ImmatureSignatureError:
        raise unauthorized("the access token is not valid yet (nbf/iat in the future)") from None
    except jwt.InvalidAudienceError:
        raise unauthorized(
            f"the access token was issued for another resource: aud must be {settings.OAUTH_AUDIENCE}"
        ) from None
    except jwt.InvalidIssuerError:
        raise unauthorized(f"the access token's issuer is not trusted: iss must be {settings.OAUTH_ISSUER}") from None
    except jwt.InvalidSignatureError:
        raise unauthorized("the access token's signature does not verify") from None
    except jwt.MissingRequiredClaimError as exc:
        raise unauthorized(f"the access token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidTokenError as exc:
        raise unauthorized(f"invalid access token: {exc}") from None
    scopes = _scopes(claims)
    if missing := [s for s in settings.OAUTH_REQUIRED_SCOPES if s not in scopes]:
        raise insufficient_scope(
            " ".join(settings.OAUTH_REQUIRED_SCOPES), f"the access token lacks scope(s): {' '.join(missing)}"
        )
    credential_id = str(claims.get("jti") or "jwt:" + hashlib.sha256(token.encode()).hexdigest()[:16])
    principal = await sync_to_async(releasing(_oauth_principal))(claims, scopes, credential_id)
    ttl = min(float(settings.TOKEN_CACHE_SECONDS), float(claims["exp"]) - datetime.now(UTC).timestamp())
    return principal, ttl


def _oauth_principal(claims: Mapping[str, Any], scopes: frozenset[str], credential_id: str) -> Principal:
    subject = f"oauth:{claims['iss']}#{claims['sub']}"
    login = claims.get(settings.OAUTH_USER_CLAIM)
    user = user_for_login(str(login)) if login else None
    if user is not None and user.is_active:
        return principal_for_user(user, identity_source="oauth", credential_id=credential_id, scopes=scopes)
    if settings.OAUTH_DEFAULT_ROLE:
        return principal_for_roles(
            principal_id=subject,
            name=str(login or claims["sub"]),
            identity_source="oauth",
            roles=[settings.OAUTH_DEFAULT_ROLE],
            scopes=scopes,
            credential_id=credential_id,
        )
    raise forbidden(
        f"no active platform user matches {settings.OAUTH_USER_CLAIM}={login!r} of this access token: ask an admin "
        "to create the user, or set OAUTH_DEFAULT_ROLE"
    )


# ------------------------------------------------------------------------------------------ Tailnet


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def is_trusted_proxy(client_host: str | None) -> bool:
    if not client_host or not settings.TAILNET_TRUSTED_PROXIES:
        return False
    try:
        address = ipaddress.ip_address(client_host)
    except ValueError:
        return False
    return any(address in network for network in _networks(tuple(settings.TAILNET_TRUSTED_PROXIES)))


async def _tailnet_principal(login: str, client_host: str | None) -> Principal:
    if not is_trusted_proxy(client_host):
        raise unauthorized(
            "Tailscale identity headers are accepted only from TAILNET_TRUSTED_PROXIES; "
            f"{client_host or 'this client'} is not one: send an Authorization bearer token instead",
            code="unauthorized",
        )
    return await _tailnet_login_principal(login.strip().lower())


async def _tailnet_login_principal(login: str, *, cache_key: str | None = None) -> Principal:
    key = cache_key or f"tailnet:{login}"
    hit = _cache.get(key)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    if not any(fnmatchcase(login, allowed.lower()) for allowed in settings.TAILNET_ALLOWED_LOGINS):
        raise forbidden(f"Tailnet login {login} is not in TAILNET_ALLOWED_LOGINS")
    principal = await sync_to_async(releasing(_tailnet_user_principal))(login)
    _remember(key, principal, float(settings.TOKEN_CACHE_SECONDS))
    return principal


def _tailnet_user_principal(login: str) -> Principal:
    user = user_for_login(login)
    if user is None or not user.is_active:
        raise forbidden(f"no active platform user has the email or username {login} (Tailnet login): ask an admin")
    return principal_for_user(user, identity_source="tailnet", credential_id=f"tailnet:{login}")


# Tailscale assigns node addresses from these ranges; only they are worth asking tailscaled about.
_TAILNET_RANGES = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("fd7a:115c:a1e0::/48"))


def is_tailnet_address(client_host: str | None) -> bool:
    try:
        address = ipaddress.ip_address(client_host or "")
    except ValueError:
        return False
    return any(address in network for network in _TAILNET_RANGES)


async def _whois_principal(client_host: str) -> Principal:
    """A direct Tailnet peer (the gateway listens on the tailnet): ask the local tailscaled who it is."""
    key = f"whois:{client_host}"
    hit = _cache.get(key)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    try:
        found = await tailscale_whois(settings.TAILSCALE_LOCALAPI_SOCKET, client_host)
    except (OSError, ValueError, TimeoutError) as exc:
        log.error("tailscaled LocalAPI whois failed: %s", exc)
        raise unauthorized(
            f"cannot ask tailscaled who {client_host} is ({exc}); send an Authorization bearer token instead",
            code="unauthorized",
        ) from None
    login = str(((found or {}).get("UserProfile") or {}).get("LoginName") or "").lower()
    if not login or login == "tagged-devices":
        raise unauthorized(
            f"tailscaled knows no user for {client_host} (tagged or unknown node): send a bearer token",
            code="unauthorized",
        )
    return await _tailnet_login_principal(login, cache_key=key)


async def _read_to_eof(reader: asyncio.StreamReader, *, limit: int) -> bytes:
    """The whole HTTP/1.0 answer: headers and body can arrive in separate reads (seen under load)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await reader.read(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ValueError(f"tailscaled's answer is over {limit} bytes")
    return b"".join(chunks)


async def tailscale_whois(socket_path: str, address: str, *, timeout: float = 2.0) -> dict[str, Any] | None:
    """GET /localapi/v0/whois on tailscaled's unix socket; None when it does not know the address."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(socket_path), timeout)
    try:
        writer.write(
            f"GET /localapi/v0/whois?addr={quote(address)} HTTP/1.0\r\nHost: local-tailscaled.sock\r\n\r\n".encode()
        )
        await writer.drain()
        raw = await asyncio.wait_for(_read_to_eof(reader, limit=1 << 20), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
    if status == 404:
        return None
    if status != 200:
        raise ValueError(f"tailscaled answered HTTP {status or '?'}")
    document = json.loads(body)
    return document if isinstance(document, dict) else None
