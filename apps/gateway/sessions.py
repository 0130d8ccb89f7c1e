"""Handshake-era sessions in Redis: any replica serves any session, and a restart keeps them.

A session is a hash (negotiated version, client info and capabilities, the caller it is bound to, log level)
with a sliding TTL, plus a Redis stream of the SSE events sent on its streams (for `Last-Event-ID` resumption).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from apps.gateway.config import config
from apps.gateway.redis_client import get_blocking_redis, get_redis

_PREFIX = "mcpplat:mcp:session:"
EVENTS_MAXLEN = 1000


@dataclass
class Session:
    id: str
    protocol_version: str
    principal_id: str
    client_info: dict[str, Any]
    client_capabilities: dict[str, Any]
    log_level: str | None = None

    @property
    def key(self) -> str:
        return _PREFIX + self.id

    @property
    def events_key(self) -> str:
        return _PREFIX + self.id + ":events"


def _decode(sid: str, raw: dict[bytes, bytes]) -> Session:
    return Session(
        id=sid,
        protocol_version=raw[b"v"].decode(),
        principal_id=raw[b"p"].decode(),
        client_info=orjson.loads(raw.get(b"ci", b"{}")),
        client_capabilities=orjson.loads(raw.get(b"cc", b"{}")),
        log_level=raw[b"l"].decode() if raw.get(b"l") else None,
    )


async def session_create(
    *, protocol_version: str, principal_id: str, client_info: dict[str, Any], client_capabilities: dict[str, Any]
) -> Session:
    session = Session(
        id=secrets.token_urlsafe(24),
        protocol_version=protocol_version,
        principal_id=principal_id,
        client_info=client_info,
        client_capabilities=client_capabilities,
    )
    ttl = config().session_ttl_s
    pipe = get_redis().pipeline(transaction=False)
    pipe.hset(
        session.key,
        mapping={
            "v": protocol_version,
            "p": principal_id,
            "ci": orjson.dumps(client_info),
            "cc": orjson.dumps(client_capabilities),
            "t": str(int(time.time())),
        },
    )
    pipe.expire(session.key, ttl)
    await pipe.execute()
    return session


async def session_get(sid: str) -> Session | None:
    if not sid or len(sid) > 128:
        return None
    key = _PREFIX + sid
    pipe = get_redis().pipeline(transaction=False)
    pipe.hgetall(key)
    pipe.expire(key, config().session_ttl_s)
    raw, _ = await pipe.execute()
    if not raw or b"v" not in raw:
        return None
    return _decode(sid, raw)


async def session_set_log_level(session: Session, level: str) -> None:
    await get_redis().hset(session.key, "l", level)
    session.log_level = level


async def session_delete(session: Session) -> None:
    await get_redis().delete(session.key, session.events_key)


async def event_record(session: Session, stream: str, payload: bytes) -> str:
    """Append one SSE event to the session's log; returns its SSE id `<stream>.<entry>`."""
    pipe = get_redis().pipeline(transaction=False)
    pipe.xadd(session.events_key, {"s": stream, "d": payload}, maxlen=EVENTS_MAXLEN, approximate=True)
    pipe.expire(session.events_key, config().session_ttl_s)
    entry, _ = await pipe.execute()
    return f"{stream}.{entry.decode()}"


_EVENT_ID = re.compile(r"(?:get|[0-9a-f]{12})\.([0-9]{1,20})-([0-9]{1,20})")
_JOB_EVENT_ID = re.compile(r"([0-9a-f]{12})\.job\.([0-9]{1,18})")
_U64 = 2**64 - 1


def event_id_problem(value: str) -> str | None:
    """Why a `Last-Event-ID` cannot be one this server sent (None when it can): checked before Redis sees it.

    Ours are `<stream>.<ms>-<seq>` (a session stream entry: `get` or a 12-hex request stream, then a Redis stream
    id whose two parts are 64-bit) or `<stream>.job.<seq>` (a queued call's job event).
    """
    if _JOB_EVENT_ID.fullmatch(value):
        return None
    match = _EVENT_ID.fullmatch(value)
    if match is None:
        return "it is not the id of an SSE event this server sent"
    ms, seq = int(match[1]), int(match[2])
    if ms > _U64 or seq > _U64 or (ms, seq) == (_U64, _U64):  # Redis refuses an exclusive start at the last id
        return "its entry is out of range"
    return None


async def events_after(session: Session, last_event_id: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The stream a `Last-Event-ID` belongs to, and that stream's events recorded after it."""
    stream, _, entry = last_event_id.rpartition(".")
    if not stream or not entry:
        return "", []
    rows: Any = await get_redis().xrange(session.events_key, min=f"({entry}", max="+")
    return stream, [
        (f"{stream}.{eid.decode()}", fields[b"d"]) for eid, fields in rows if fields.get(b"s", b"").decode() == stream
    ]


async def events_wait(session: Session, after_entry: str, timeout_s: float) -> list[tuple[str, str, bytes]]:
    """Block until events after `after_entry` arrive (or the timeout): (sse id, stream, payload)."""
    reply: Any = await get_blocking_redis().xread(
        {session.events_key: after_entry}, block=int(timeout_s * 1000), count=100
    )
    out = []
    for _key, rows in reply or []:
        for eid, fields in rows:
            stream = fields.get(b"s", b"").decode()
            out.append((f"{stream}.{eid.decode()}", stream, fields[b"d"]))
    return out


async def events_tail(session: Session) -> str:
    rows: Any = await get_redis().xrevrange(session.events_key, count=1)
    return rows[0][0].decode() if rows else "0-0"


async def publish(session_id: str, message: dict[str, Any]) -> None:
    """Send a server notification to the session's standalone GET stream (any replica holding it relays it)."""
    session = Session(session_id, "", "", {}, {})
    await event_record(session, "get", orjson.dumps(message))


async def reply_deliver(session_id: str, request_id: Any, message: dict[str, Any]) -> None:
    """A client's JSON-RPC response to a server-initiated request: hand it to whichever replica waits."""
    key = f"{_PREFIX}{session_id}:reply:{request_id}"
    pipe = get_redis().pipeline(transaction=False)
    pipe.rpush(key, orjson.dumps(message))
    pipe.expire(key, 300)
    await pipe.execute()


async def reply_wait(session_id: str, request_id: Any, timeout_s: float) -> dict[str, Any] | None:
    key = f"{_PREFIX}{session_id}:reply:{request_id}"
    got = await get_blocking_redis().blpop([key], timeout=timeout_s)
    if got is None:
        return None
    return orjson.loads(got[1])
