"""Redis token buckets: one round trip checks and takes from every bucket of a call, atomically."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apps.gateway.config import Limit
from apps.gateway.redis_client import get_redis

# KEYS: bucket keys. ARGV: capacity_1, per_ms_1, capacity_2, per_ms_2, …
# Returns {1, 0, 0} when every bucket had a token (one is taken from each), else {0, wait_ms, index_of_bucket}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens = {}
local wait, which = 0, 0
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i - 1])
  local rate = tonumber(ARGV[2 * i])
  local v = redis.call('HMGET', KEYS[i], 't', 'ts')
  local have = tonumber(v[1]) or cap
  local ts = tonumber(v[2]) or now
  have = math.min(cap, have + math.max(0, now - ts) * rate)
  tokens[i] = have
  if have < 1 then
    local w = math.ceil((1 - have) / rate)
    if w > wait then wait, which = w, i end
  end
end
if wait > 0 then return {0, wait, which} end
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i - 1])
  local rate = tonumber(ARGV[2 * i])
  redis.call('HSET', KEYS[i], 't', tostring(tokens[i] - 1), 'ts', now)
  redis.call('PEXPIRE', KEYS[i], math.ceil(cap / rate) + 1000)
end
return {1, 0, 0}
"""


@dataclass(frozen=True)
class Bucket:
    key: str
    limit: Limit
    label: str  # what to tell the caller: "caller" or "caller+tool"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_ms: int = 0
    bucket: Bucket | None = None


ALLOWED = Verdict(True)
_script_sha: dict[int, str] = {}


async def take(buckets: list[Bucket]) -> Verdict:
    client = get_redis()
    args: list[Any] = []
    for bucket in buckets:
        args.extend((bucket.limit.capacity, repr(bucket.limit.per_ms)))
    keys = [b.key for b in buckets]
    sha = _script_sha.get(id(client))
    if sha is None:
        sha = _script_sha[id(client)] = await client.script_load(_TAKE)
    try:
        allowed, wait, which = await client.evalsha(sha, len(keys), *keys, *args)
    except Exception as exc:  # NOSCRIPT after a Redis restart: load again once
        if "NOSCRIPT" not in str(exc):
            raise
        sha = _script_sha[id(client)] = await client.script_load(_TAKE)
        allowed, wait, which = await client.evalsha(sha, len(keys), *keys, *args)
    if allowed:
        return Verdict(True)
    return Verdict(False, int(wait), buckets[int(which) - 1])
