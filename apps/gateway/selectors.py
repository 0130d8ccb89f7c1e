"""Reads for the hot path: tool settings from the Redis mirror, cached in-process for a moment."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from apps.common.db import db_call
from apps.gateway.config import Limit, parse_limit
from apps.gateway.redis_client import get_redis
from apps.gateway.services import TOOL_SETTINGS_KEY, tool_settings_publish

_CACHE_S = 2.0


@dataclass(frozen=True)
class ToolOverride:
    enabled: bool
    rate_limit: Limit | None


_cache: dict[str, ToolOverride] = {}
_cache_until = 0.0


async def tool_overrides() -> dict[str, ToolOverride]:
    """Every staff override, at most `_CACHE_S` old. Loads the mirror from Postgres once if Redis lost it."""
    global _cache, _cache_until
    now = time.monotonic()
    if now < _cache_until:
        return _cache
    raw: dict[bytes, bytes] = await get_redis().hgetall(TOOL_SETTINGS_KEY)  # type: ignore[assignment]
    if b"__loaded__" not in raw:
        await db_call(tool_settings_publish)()
        raw = await get_redis().hgetall(TOOL_SETTINGS_KEY)  # type: ignore[assignment]
    parsed: dict[str, ToolOverride] = {}
    for key, value in raw.items():
        if key == b"__loaded__":
            continue
        data = orjson.loads(value)
        limit = parse_limit(data["rate_limit"], name="ToolSetting.rate_limit") if data.get("rate_limit") else None
        parsed[key.decode()] = ToolOverride(enabled=bool(data.get("enabled", True)), rate_limit=limit)
    _cache, _cache_until = parsed, now + _CACHE_S
    return parsed


def tool_overrides_forget() -> None:
    global _cache_until  # noqa: PLW0603 - the process-wide cache
    _cache_until = 0.0
