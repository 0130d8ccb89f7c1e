"""Async Redis for the gateway's hot path: one client (and pool) per event loop."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from django.conf import settings

_clients: dict[int, aioredis.Redis] = {}
_blocking: dict[int, aioredis.Redis] = {}


def get_redis() -> aioredis.Redis:
    key = id(asyncio.get_running_loop())
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = aioredis.Redis.from_url(settings.REDIS_URL, max_connections=64)
    return client


def get_blocking_redis() -> aioredis.Redis:
    """A client for blocking reads (XREAD BLOCK, BLPOP): redis-py's default 5 s socket timeout would cut them."""
    key = id(asyncio.get_running_loop())
    client = _blocking.get(key)
    if client is None:
        client = _blocking[key] = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=None, max_connections=256)
    return client
