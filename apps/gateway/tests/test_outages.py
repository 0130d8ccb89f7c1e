"""Outages of PostgreSQL and Redis: broken connections heal, and while a dependency is down calls answer 503 with
`Retry-After` naming it, within a bounded time (issue #20 items 5 and 6).

Everything here is real: the suite's PostgreSQL has its backends terminated (what a restart does to the gateway's
pooled connections) or refuses connections to the test database (`ALLOW_CONNECTIONS false`); Redis is replaced by
a loopback port where nothing listens, or by a loopback socket that accepts and never answers (a stuck Redis).
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from psycopg import sql

from apps.audit.models import AuditEvent
from apps.gateway import redis_client
from apps.gateway.tests.inprocess import Answer, modern_tool_call


def _call(token: str, request_id: str) -> Answer:
    """One run.start (an inline tool that writes to PostgreSQL) through the /mcp app, on its own event loop."""
    return asyncio.run(modern_tool_call(token, "run.start", {"name": f"outage {request_id}"}, request_id))


def _terminate_other_backends() -> int:
    """What a PostgreSQL restart does to every connection but ours: each pooled one is now broken."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def _allow_connections(allow: bool) -> None:
    """ALTER DATABASE … ALLOW_CONNECTIONS, from the server's `postgres` database (not allowed on the current one)."""
    params = {k: v for k, v in connection.get_connection_params().items() if k not in {"dbname", "cursor_factory"}}
    name = connection.settings_dict["NAME"]
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(sql.Identifier(name), allow))


@pytest.fixture
def refusing_database(admin_token) -> Iterator[None]:
    """The test database refuses new connections and every existing one but this test's is closed."""
    _allow_connections(False)
    _terminate_other_backends()
    try:
        yield
    finally:
        _allow_connections(True)


def _assert_unavailable(answer: Answer, dependency: str, *, streamed: bool = False) -> None:
    """503 + Retry-After; or, for a call slow enough that its SSE stream had opened, the same error in the stream."""
    if streamed and answer.headers.get("content-type", "").startswith("text/event-stream"):
        assert answer.status == 200
    else:
        assert answer.status == 503, answer.body
        assert int(answer.headers["retry-after"]) == settings.OUTAGE_RETRY_AFTER_S
    error = answer.final()["error"]
    assert error["data"] == {"dependency": dependency, "retryAfterMs": settings.OUTAGE_RETRY_AFTER_S * 1000}
    name = {"postgresql": "PostgreSQL", "redis": "Redis"}[dependency]
    assert error["message"].startswith(f"{name} is unavailable"), error
    assert "retry after" in error["message"]


def test_connections_broken_by_a_database_restart_are_discarded_and_the_next_call_works(admin_token):
    # given a gateway (one event loop, as in the server process) whose pool, threads and audit writer hold
    # connections
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        ours = cursor.fetchone()[0]

    async def scenario() -> list[Answer]:
        warm = [await modern_tool_call(admin_token, "run.start", {"name": "warm"}, f"warm-{n}") for n in range(4)]
        assert all(a.final()["result"]["isError"] is False for a in warm)
        # when PostgreSQL closes every one of them (a restart does this to each connection)
        params = {k: v for k, v in connection.get_connection_params().items() if k != "cursor_factory"}
        with psycopg.connect(**params, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), %s)",
                [ours],
            ).fetchone()
        assert killed is not None
        assert killed[0] >= 2
        # then the very next calls work
        return [
            await modern_tool_call(admin_token, "run.start", {"name": "after"}, f"after-restart-{n}") for n in range(3)
        ]

    for n, answer in enumerate(asyncio.run(scenario())):
        assert answer.status == 200, answer.body
        assert answer.final()["result"]["isError"] is False, answer.final()
        # each with its audit row
        assert AuditEvent.objects.filter(request_id=f"after-restart-{n}", tool="run.start", outcome="ok").count() == 1


def test_a_database_that_refuses_connections_answers_503_naming_it_within_the_timeout(
    admin_token, refusing_database, caplog
):
    # given PostgreSQL refusing connections (refusing_database)
    # when a call needs it
    started = time.monotonic()
    answer = _call(admin_token, "while-down")
    elapsed = time.monotonic() - started
    # then it answers 503 + Retry-After naming PostgreSQL, within the connection timeout, with no traceback logged
    _assert_unavailable(answer, "postgresql")
    assert elapsed < settings.DB_TIMEOUT_S + 3, elapsed
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]


def test_calls_work_again_once_the_database_accepts_connections(admin_token, refusing_database):
    # given a call that found PostgreSQL down
    assert _call(admin_token, "down").status == 503
    # when it accepts connections again
    _allow_connections(True)
    # then calls work again without a restart of the gateway (the pool's reconnect back-off is bounded)
    deadline = time.monotonic() + 20
    while True:
        answer = _call(admin_token, f"up-{uuid.uuid4().hex[:6]}")
        if answer.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert answer.status == 200, answer.body
    assert answer.final()["result"]["isError"] is False


@pytest.fixture
def unreachable_redis(monkeypatch) -> None:
    """Redis at a loopback port where nothing listens (as while it restarts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: connecting to it is refused
    monkeypatch.setattr(settings, "REDIS_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setattr(redis_client, "_clients", {})
    monkeypatch.setattr(redis_client, "_blocking", {})


@pytest.fixture
def stuck_redis(monkeypatch) -> Iterator[None]:
    """Redis at a loopback socket that accepts connections and never answers (a stuck or paused Redis)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    monkeypatch.setattr(settings, "REDIS_URL", f"redis://127.0.0.1:{listener.getsockname()[1]}/0")
    monkeypatch.setattr(redis_client, "_clients", {})
    monkeypatch.setattr(redis_client, "_blocking", {})
    try:
        yield
    finally:
        listener.close()


def _overrides_expired(monkeypatch) -> None:
    # the gateway's 1 s cache of staff overrides would answer from memory; expire it so Redis is asked
    from apps.gateway import selectors

    monkeypatch.setattr(selectors, "_cache_until", 0.0)


def test_an_unreachable_redis_answers_503_naming_it_and_the_refusal_is_audited(
    admin_token, unreachable_redis, monkeypatch
):
    _overrides_expired(monkeypatch)
    # when a call needs Redis while nothing listens
    started = time.monotonic()
    answer = _call(admin_token, "redis-down")
    # then 503 + Retry-After names Redis, quickly, and the audit trail (PostgreSQL) records the refusal
    _assert_unavailable(answer, "redis")
    assert time.monotonic() - started < 3
    assert AuditEvent.objects.filter(request_id="redis-down", error_code="service_unavailable").count() == 1


def test_a_stuck_redis_answers_503_within_the_command_timeout_never_hanging(admin_token, stuck_redis, monkeypatch):
    _overrides_expired(monkeypatch)
    # when a call needs a Redis that never answers
    started = time.monotonic()
    answer = _call(admin_token, "redis-stuck")
    elapsed = time.monotonic() - started
    # then it ends with the unavailable error naming Redis once the command timeout passes (not the client's own
    # timeout); the SSE stream may have opened meanwhile, so the error arrives in it
    _assert_unavailable(answer, "redis", streamed=True)
    assert elapsed < redis_client.CONNECT_TIMEOUT_S + redis_client.COMMAND_TIMEOUT_S + 2, elapsed
