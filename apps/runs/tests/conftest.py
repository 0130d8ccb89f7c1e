from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection

from apps.accounts.principal import Principal
from apps.gateway.registry import registry
from conftest import ROOT

# The test tools are registered for this package's tests only: other apps' tests (the generated tool reference,
# tools/list) must not see them. Workers and gateways started by these tests import them by RUNS_EXTRA_TOOL_MODULES.
_before = set(registry._tools)
from apps.runs.tests import tools_fixture  # noqa: E402, F401

TEST_TOOLS = {name: registry._tools.pop(name) for name in set(registry._tools) - _before}

FAST_RUNTIME_ENV = {
    "RUNS_EXTRA_TOOL_MODULES": "apps.runs.tests.tools_fixture",
    "RUNS_RETRY_BASE_MS": "50",
    "RUNS_RETRY_MAX_MS": "200",
    "RUNS_JOB_HEARTBEAT_S": "0.3",
    "RUNS_JOB_STALE_S": "2",
    "RUNS_CANCEL_POLL_MS": "50",
    "RUNS_SCHEDULER_TICK_S": "0.5",
}


@pytest.fixture(autouse=True)
def _runs_test_tools() -> Iterator[None]:
    registry._tools.update(TEST_TOOLS)
    yield
    for name in TEST_TOOLS:
        registry._tools.pop(name, None)


@pytest.fixture
def alice() -> Principal:
    return Principal(id="user:1", kind="user", name="alice", identity_source="api_token", grants=frozenset())


@pytest.fixture
def bob() -> Principal:
    return Principal(id="user:2", kind="user", name="bob", identity_source="api_token")


@pytest.fixture
def operator() -> Principal:
    return Principal(
        id="user:3", kind="user", name="olga", identity_source="session", grants=frozenset({"runs.manage"})
    )


@pytest.fixture
def runtime_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_RUNTIME_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def job_worker(runtime_env: None, start_worker: Callable[..., Any]) -> Callable[..., Any]:
    """Start a real worker for the job queues on this test's database (needs transaction=True tests)."""

    def start(*queues: str, threads: int = 2) -> Any:
        return start_worker(*(queues or ("default",)), threads=threads, db_name=connection.settings_dict["NAME"])

    return start


@pytest.fixture(scope="module")
def shared_worker(django_db_setup: None, django_db_blocker: Any) -> Iterator[subprocess.Popen[bytes]]:
    """One real worker (default + maintenance queues) for a whole test module: starting one costs seconds.

    The root `start_worker` fixture is per test; this one mirrors its command line at module scope.
    """
    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    env = {
        **os.environ,
        **FAST_RUNTIME_ENV,
        "DJANGO_SETTINGS_MODULE": "mcpplat.settings.test",
        "MCPPLAT_TEST_WORKER_DB": db_name,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "rundramatiq",
            "--processes",
            "1",
            "--threads",
            "4",
            "--queues",
            "default",
            "maintenance",
            "--worker-shutdown-timeout",
            "5000",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
