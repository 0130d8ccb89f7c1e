"""Readiness checks: each dependency answered with its own timing, so a 503 names what is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis.asyncio as aioredis
from django.conf import settings

CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    ms: float
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"ok": self.ok, "ms": round(self.ms, 2)}
        if self.error:
            out["error"] = self.error
        return out


async def _postgres() -> None:
    db: dict[str, Any] = settings.DATABASES["default"]
    conn = await psycopg.AsyncConnection.connect(
        host=db["HOST"],
        port=db["PORT"],
        dbname=db["NAME"],
        user=db["USER"],
        password=db["PASSWORD"],
        connect_timeout=int(CHECK_TIMEOUT_S),
        autocommit=True,
    )
    async with conn:
        await conn.execute("SELECT 1")


async def _redis_ping(url: str) -> None:
    client = aioredis.from_url(url, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S)
    try:
        if not await client.ping():
            raise RuntimeError("PING did not answer PONG")
    finally:
        await client.aclose()


async def _redis() -> None:
    await _redis_ping(settings.REDIS_URL)


async def _broker() -> None:
    broker: dict[str, Any] = settings.DRAMATIQ_BROKER
    url: str = broker["OPTIONS"]["url"]
    parts = urlsplit(url)
    if parts.scheme in {"amqp", "amqps"}:
        # A TCP handshake with the broker; the AMQP login happens in the workers.
        _, writer = await asyncio.open_connection(parts.hostname, parts.port or 5672)
        writer.close()
        await writer.wait_closed()
    else:
        await _redis_ping(url)


CHECKS: dict[str, Callable[[], Awaitable[None]]] = {"postgres": _postgres, "redis": _redis, "broker": _broker}


async def _timed(name: str, check: Callable[[], Awaitable[None]]) -> CheckResult:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
        reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}".strip()
        return CheckResult(name, False, (time.perf_counter() - started) * 1000, reason[:300])
    return CheckResult(name, True, (time.perf_counter() - started) * 1000)


async def readiness() -> list[CheckResult]:
    return list(await asyncio.gather(*(_timed(name, check) for name, check in CHECKS.items())))
