from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings

from apps.common.actors import broker_echo
from conftest import wait_for
from mcpplat import embedded, env


@pytest.mark.django_db
def test_pgvector_round_trip():
    # given a table with a vector column
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE embeddings (id int PRIMARY KEY, v vector(3))")
        # when a vector is written and read back, and compared by cosine distance
        cursor.execute("INSERT INTO embeddings VALUES (1, '[1,2,3]'), (2, '[-1,-2,-3]')")
        cursor.execute("SELECT id, v::text, v <=> '[1,2,3]' FROM embeddings ORDER BY v <=> '[1,2,3]'")
        rows = cursor.fetchall()
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        (version,) = cursor.fetchone()
    # then the value survives, the nearest comes first, and distances are exact
    assert rows == [(1, "[1,2,3]", 0.0), (2, "[-1,-2,-3]", 2.0)]
    assert version.startswith("0.8")


@pytest.mark.slow
def test_dramatiq_message_is_processed_by_a_real_worker(redis_client, start_worker):
    # given a real worker process consuming the default queue
    start_worker("default")
    key, value = f"echo:{uuid.uuid4()}", uuid.uuid4().hex
    # when a message goes through the Redis broker
    broker_echo.send(key, value)
    # then the worker ran the actor
    assert wait_for(lambda: redis_client.get(key), timeout=30) == value.encode()


def test_healthz_touches_nothing(client):
    # when / then
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_names_redis_while_it_is_down_and_recovers(client):
    # given a Redis of our own that readiness points at
    folder = Path(tempfile.mkdtemp(prefix="mcpplat-redis-"))
    socket_path = folder / "r.sock"
    binary = str(embedded.redis_binary())

    def start_redis() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(socket_path), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_for(socket_path.exists, timeout=10)
        return proc

    url = f"unix://{socket_path}?db=0"
    redis_proc = start_redis()
    try:
        with override_settings(REDIS_URL=url, DRAMATIQ_BROKER={"OPTIONS": {"url": url}}):
            assert client.get("/readyz").status_code == 200
            # when Redis stops
            redis_proc.terminate()
            redis_proc.wait(10)
            down = client.get("/readyz")
            # then readiness is 503 and names it, with per-check timings
            assert down.status_code == 503
            body = down.json()
            assert body["status"] == "unavailable"
            assert "redis" in body["failing"]
            assert "postgres" not in body["failing"]
            assert body["checks"]["postgres"]["ok"] is True
            assert body["checks"]["redis"]["ok"] is False
            assert "ms" in body["checks"]["redis"]
            # when it comes back
            redis_proc = start_redis()
            # then readiness is 200 again
            up = client.get("/readyz")
            assert up.status_code == 200
            assert up.json()["failing"] == []
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def test_readme_configuration_table_is_current():
    # given the README written by `make env-docs`
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    # then it carries the table generated from mcpplat/env.py
    assert env.markdown_table() in readme, "README.md is stale: run `make env-docs`"
