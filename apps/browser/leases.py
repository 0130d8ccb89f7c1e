"""Browser session leases in Redis: who owns a session, for how long, and how many a role holds.

Keys (all under `browser:`):
- `session:<id>`  hash {owner, principal, role, url, created}; TTL = the idle timeout, renewed on every call.
- `role:<role>`   sorted set of session ids scored by their lease expiry (the per-role cap counts live ones).
- `worker:<id>`   heartbeat of a worker process holding sessions (TTL 30 s, renewed every 10 s).
- `inbox:<id>`    list: calls routed to that worker because it owns the session (apps.browser.services).
- `reply:<call>`  list: the answer to one routed call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis
from django.conf import settings

PREFIX = "browser:"
HEARTBEAT_TTL_S = 30

# Atomically: drop expired members, refuse over the cap, else add the lease and its index entry.
_ACQUIRE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[4], 'principal', ARGV[5], 'role', ARGV[6], 'created', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[7])
return 1
"""


@dataclass(frozen=True)
class Lease:
    session_id: str
    owner: str
    principal: str
    role: str


@cache
def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _key(kind: str, ident: str) -> str:
    return f"{PREFIX}{kind}:{ident}"


def lease_acquire(*, session_id: str, owner: str, principal: str, role: str, cap: int) -> bool:
    idle = settings.BROWSER_SESSION_IDLE_S
    ok = client().eval(
        _ACQUIRE,
        2,
        _key("session", session_id),
        _key("role", role),
        time.time(),
        cap,
        idle,
        owner,
        principal,
        role,
        session_id,
    )
    return bool(ok)


def lease_get(session_id: str) -> Lease | None:
    data = client().hgetall(_key("session", session_id))
    if not data or b"owner" not in data:
        return None
    return Lease(
        session_id=session_id,
        owner=text_of(data[b"owner"]),
        principal=text_of(data[b"principal"]),
        role=text_of(data[b"role"]),
    )


def lease_touch(lease: Lease) -> None:
    idle = settings.BROWSER_SESSION_IDLE_S
    pipe = client().pipeline()
    pipe.expire(_key("session", lease.session_id), idle)
    pipe.zadd(_key("role", lease.role), {lease.session_id: time.time() + idle})
    pipe.execute()


def lease_release(session_id: str, role: str | None = None) -> None:
    if role is None and (lease := lease_get(session_id)):
        role = lease.role
    pipe = client().pipeline()
    pipe.delete(_key("session", session_id))
    if role:
        pipe.zrem(_key("role", role), session_id)
    pipe.execute()


def lease_exists(session_id: str) -> bool:
    return bool(client().exists(_key("session", session_id)))


def worker_heartbeat(worker_id: str, sessions: int) -> None:
    client().set(_key("worker", worker_id), sessions, ex=HEARTBEAT_TTL_S)


def worker_alive(worker_id: str) -> bool:
    return bool(client().exists(_key("worker", worker_id)))


def role_sessions(role: str) -> list[str]:
    return [text_of(m) for m in client().zrange(_key("role", role), 0, -1)]


def roles_indexed() -> list[str]:
    keys = client().scan_iter(match=_key("role", "*"), count=200)
    return [text_of(k).removeprefix(_key("role", "")) for k in keys]


def inbox_key(worker_id: str) -> str:
    return _key("inbox", worker_id)


def reply_key(call_id: str) -> str:
    return _key("reply", call_id)
