"""Database access from async code outside Django's request cycle (the `/mcp` app, event streams, workers).

Django returns a request's connection to the pool (and drops a broken one) when the request ends; async code
that reaches the ORM through a thread has no request, so `db_call` does the same after every call: the thread's
connection goes back to psycopg's pool, which checks it before handing it out again (`DATABASES` OPTIONS pool
`check`), so a connection broken by a PostgreSQL restart is discarded instead of failing the next call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps

from asgiref.sync import sync_to_async
from django.db import connections


def releasing[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, returning the calling thread's DB connections to the pool when it ends (for code run on a thread of
    its own, as `asyncio.to_thread` does; threads outside Django's request cycle never close theirs, so the pool
    would run dry and a connection broken by a restart would stay with its thread)."""

    @wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        finally:
            for conn in connections.all(initialized_only=True):
                if not conn.in_atomic_block:  # a transaction the caller opened (a test's) stays its own
                    conn.close()

    return call


def db_call[**P, R](fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`fn` run from async code on a worker thread, its DB connection returned to the pool afterwards."""
    return sync_to_async(releasing(fn), thread_sensitive=False)
