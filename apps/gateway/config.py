"""Gateway configuration, parsed once from settings (bad values fail at start-up, naming the variable)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SERVER_INFO = {"name": "mcpplat", "title": "mcpplat MCP gateway", "version": "0.1.0"}
HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_HANDSHAKE = "2025-11-25"
MODERN_VERSIONS = ("2026-07-28",)
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


@dataclass(frozen=True)
class Limit:
    """A token bucket: `capacity` tokens, refilled at `capacity / period_s` per second."""

    capacity: int
    period_s: float

    @property
    def per_ms(self) -> float:
        return self.capacity / (self.period_s * 1000.0)

    def __str__(self) -> str:
        return f"{self.capacity}/{self.period_s:g}"


def parse_limit(value: str, *, name: str) -> Limit:
    try:
        count, _, seconds = value.strip().partition("/")
        limit = Limit(int(count), float(seconds or "1"))
    except ValueError:
        raise ImproperlyConfigured(f"{name}: {value!r} is not COUNT/SECONDS (e.g. 600/60)") from None
    if limit.capacity < 1 or limit.period_s <= 0:
        raise ImproperlyConfigured(f"{name}: {value!r} needs COUNT >= 1 and SECONDS > 0")
    return limit


def _origin(value: str, *, name: str) -> str:
    parts = urlsplit(value)
    if value == "*" or parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ImproperlyConfigured(f"{name}: {value!r} is not an origin like https://app.example.com")
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(frozen=True)
class GatewayConfig:
    allowed_origins: frozenset[str]
    cors_origins: frozenset[str]
    allowed_hosts: tuple[str, ...]
    max_body_bytes: int
    tool_limit: Limit
    idempotency_ttl_s: int
    session_ttl_s: int
    keepalive_s: float
    sse_after_s: float
    page_size: int
    conformance: bool


@functools.cache
def config() -> GatewayConfig:
    cors = frozenset(_origin(o, name="MCP_CORS_ORIGINS") for o in settings.MCP_CORS_ORIGINS)
    allowed = frozenset(_origin(o, name="MCP_ALLOWED_ORIGINS") for o in settings.MCP_ALLOWED_ORIGINS) | cors
    if settings.MCP_PAGE_SIZE < 1:
        raise ImproperlyConfigured("MCP_PAGE_SIZE must be >= 1")
    return GatewayConfig(
        allowed_origins=allowed,
        cors_origins=cors,
        allowed_hosts=tuple(h.lower() for h in settings.ALLOWED_HOSTS),
        max_body_bytes=settings.MCP_MAX_BODY_BYTES,
        tool_limit=parse_limit(settings.MCP_RATE_LIMIT_TOOL, name="MCP_RATE_LIMIT_TOOL"),
        idempotency_ttl_s=settings.MCP_IDEMPOTENCY_TTL_S,
        session_ttl_s=settings.MCP_SESSION_TTL_S,
        keepalive_s=float(settings.MCP_SSE_KEEPALIVE_S),
        sse_after_s=settings.MCP_SSE_AFTER_MS / 1000.0,
        page_size=settings.MCP_PAGE_SIZE,
        conformance=bool(settings.MCP_CONFORMANCE_FIXTURES),
    )
