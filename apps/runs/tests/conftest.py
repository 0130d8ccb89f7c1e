from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from apps.accounts.principal import Principal
from apps.runs.tests import tools_fixture  # noqa: F401  (registers the test tools in this process)

FAST_RUNTIME_ENV = {
    "RUNS_EXTRA_TOOL_MODULES": "apps.runs.tests.tools_fixture",
    "RUNS_RETRY_BASE_MS": "50",
    "RUNS_RETRY_MAX_MS": "200",
    "RUNS_JOB_HEARTBEAT_S": "0.3",
    "RUNS_JOB_STALE_S": "2",
    "RUNS_CANCEL_POLL_MS": "50",
    "RUNS_SCHEDULER_TICK_S": "0.5",
}


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
