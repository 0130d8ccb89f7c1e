"""Suite-wide fixtures. The suite runs on real PostgreSQL and Redis: embedded ones unless URLs are given."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings

ROOT = Path(__file__).resolve().parent


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The suite's Redis database, emptied before each test that asks for it."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.close()


def wait_for(condition: Callable[[], object], timeout: float = 15.0, interval: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def start_worker() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real `rundramatiq` worker processes on the test settings; stopped at the end of the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        *queues: str, threads: int = 2, db_name: str | None = None, worker_timeout_ms: int = 1000
    ) -> subprocess.Popen[bytes]:
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mcpplat.settings.test",
            "dramatiq_worker_timeout": str(worker_timeout_ms),
        }
        if db_name:
            environment["MCPPLAT_TEST_WORKER_DB"] = db_name
        proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "manage.py"),
                "rundramatiq",
                "--processes",
                "1",
                "--threads",
                str(threads),
                "--queues",
                *queues,
                "--worker-shutdown-timeout",
                "5000",
            ],
            cwd=ROOT,
            env=environment,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
    for proc in started:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
