"""Telling a dependency outage from a bug: which platform dependency an exception says is unreachable.

A PostgreSQL or Redis that is restarting, refusing connections or too slow to answer within its timeout is an
outage, not a fault of the call: the gateway answers 503 with `Retry-After` naming the dependency (never 500 with a
traceback), logs one line, and the next call heals on its own because the broken connection was discarded (psycopg's
pool checks a connection before handing it out; the audit writer and the Redis clients reconnect). Timeouts bound
every wait (docs/reliability.md "Connections and outages").
"""

from __future__ import annotations

import logging
import time

import psycopg
import psycopg_pool
import redis
from django import db as django_db
from django.conf import settings

log = logging.getLogger(__name__)

POSTGRESQL = "postgresql"
REDIS = "redis"
NAMES = {POSTGRESQL: "PostgreSQL", REDIS: "Redis"}

_POSTGRES_ERRORS: tuple[type[BaseException], ...] = (
    django_db.OperationalError,
    django_db.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
)
_REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


def dependency_of(exc: BaseException) -> str | None:
    """The dependency `exc` (or an exception it was raised from or during) says is unreachable, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _REDIS_ERRORS):
            return REDIS
        if isinstance(current, _POSTGRES_ERRORS):
            return POSTGRESQL
        current = current.__cause__ or current.__context__
    return None


def retry_after_s() -> int:
    return max(1, settings.OUTAGE_RETRY_AFTER_S)


def message(dependency: str) -> str:
    return (
        f"{NAMES.get(dependency, dependency)} is unavailable to the platform right now; nothing was done — "
        f"retry after {retry_after_s()} s (the Retry-After header)"
    )


_last_logged: dict[str, float] = {}


def log_outage(dependency: str, exc: BaseException, where: str) -> None:
    """One warning line (no traceback) per dependency every 10 s: an outage is not a bug, and floods hide it."""
    now = time.monotonic()
    if now - _last_logged.get(dependency, -1e9) >= 10.0:
        _last_logged[dependency] = now
        log.warning("%s unavailable (%s): %s: %s", NAMES.get(dependency, dependency), where, type(exc).__name__, exc)
