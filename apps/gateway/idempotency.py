"""`Idempotency-Key` for inline tools: per caller, with a TTL, in Redis.

The first call with a key claims it (SET NX) and stores its result when it finishes; a repeat with the same
arguments gets the stored result without re-running; the same key with other arguments is refused. Queued tools
get the same guarantee from apps.runs (backed by a Postgres unique constraint).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from apps.gateway.config import config
from apps.gateway.redis_client import get_redis

_PREFIX = "mcpplat:mcp:idem:"
MAX_KEY_LENGTH = 255


def arguments_digest(tool: str, arguments: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps([tool, arguments], option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class Claim:
    state: str  # "claimed" (run it), "replay" (result holds the stored result), "conflict", "running"
    result: dict[str, Any] | None = None


def _key(principal_id: str, key: str) -> str:
    return f"{_PREFIX}{principal_id}:{key}"


async def claim(principal_id: str, key: str, digest: str) -> Claim:
    redis_key = _key(principal_id, key)
    client = get_redis()
    ttl = config().idempotency_ttl_s
    if await client.set(redis_key, orjson.dumps({"digest": digest, "state": "running"}), nx=True, ex=ttl):
        return Claim("claimed")
    raw = await client.get(redis_key)
    if raw is None:  # expired between the two calls: claim again
        return await claim(principal_id, key, digest)
    stored = orjson.loads(raw)
    if stored["digest"] != digest:
        return Claim("conflict")
    if stored["state"] == "running":
        return Claim("running")
    return Claim("replay", stored["result"])


async def complete(principal_id: str, key: str, digest: str, result: dict[str, Any]) -> None:
    value = orjson.dumps({"digest": digest, "state": "done", "result": result})
    await get_redis().set(_key(principal_id, key), value, ex=config().idempotency_ttl_s)


async def release(principal_id: str, key: str) -> None:
    """Forget a claim whose call failed unexpectedly, so a retry can run."""
    await get_redis().delete(_key(principal_id, key))
