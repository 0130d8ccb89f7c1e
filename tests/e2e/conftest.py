"""A real daphne serving the platform on a free loopback port, and callers with real API tokens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    base: str


@pytest.fixture(scope="session")
def mcp_server(django_db_setup, django_db_blocker) -> Iterator[Server]:
    """daphne on the test database with the e2e demo tools, for the whole session."""
    port = free_port()
    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.e2e.settings",
        "MCPPLAT_TEST_WORKER_DB": db_name,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mcpplat.asgi:application"],
        cwd=ROOT,
        env=environment,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"daphne did not start: {proc.stderr.read().decode()[-3000:] if proc.stderr else ''}")
        time.sleep(0.1)
    yield Server(url=f"{base}/mcp", base=base)
    os.killpg(proc.pid, 15)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


@dataclass(frozen=True)
class Callers:
    admin: str
    e2e: str  # role "e2e": platform.* tools, 600 requests/minute
    viewer: str


@pytest.fixture
def callers(transactional_db, redis_client) -> Callers:
    """API tokens for an admin, an e2e-role service account and a viewer (fresh database and Redis)."""
    from apps.accounts import services
    from apps.accounts.models import Role, RoleGrant

    services.role_catalog_seed()
    role = Role.objects.create(name="e2e", description="end-to-end tests", requests_per_minute=600)
    RoleGrant.objects.create(role=role, pattern="platform.*")

    def token(name: str, role_name: str) -> str:
        account = services.service_account_ensure(name=name, roles=[role_name])
        return services.api_token_create(name=f"{name} token", service_account=account).value

    return Callers(
        admin=token("e2e-admin", "admin"), e2e=token("e2e-agent", "e2e"), viewer=token("e2e-viewer", "viewer")
    )
