"""A real daphne serving the platform on a free loopback port, and callers with real API tokens."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connection

from tests.daphne import free_port, serving

ROOT = Path(__file__).resolve().parents[2]


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
    with serving(sys.executable, port, environment, timeout=30) as base:
        yield Server(url=f"{base}/mcp", base=base)


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
