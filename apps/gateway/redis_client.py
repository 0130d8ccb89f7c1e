"""Async Redis for the gateway's hot path: one client (and pool) per event loop.

Every wait is bounded: connecting takes at most 2 s, a command of the ordinary client at most 3 s, and a refused
connection is retried twice within ≈ 0.3 s (a Redis restart takes about that long); past that the call answers
503 naming Redis (apps.common.outages), never hangs. A timeout is not retried: a stuck Redis does not answer a
second time either. redis-py drops a broken connection from its pool, so the next call after a restart reconnects.
"""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

_clients: dict[int, aioredis.Redis] = {}
_blocking: dict[int, aioredis.Redis] = {}

CONNECT_TIMEOUT_S = 2.0
COMMAND_TIMEOUT_S = 3.0


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.2, base=0.1), retries=2, supported_errors=(redis.ConnectionError,))


def get_redis() -> aioredis.Redis:
    key = id(asyncio.get_running_loop())
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = aioredis.Redis.from_url(
            settings.REDIS_URL,
            max_connections=64,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,
            retry=_retry(),
        )
    return client


def get_blocking_redis() -> aioredis.Redis:
    """A client for blocking reads (XREAD BLOCK, BLPOP): an ordinary command timeout would cut them."""
    key = id(asyncio.get_running_loop())
    client = _blocking.get(key)
    if client is None:
        client = _blocking[key] = aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=None,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            max_connections=256,
            retry=_retry(),
        )
    return client
