from __future__ import annotations

from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model

from apps.accounts.identity import authenticate, identity_cache_clear, jwks_cache_clear
from apps.accounts.principal import Principal
from apps.accounts.services import role_catalog_seed


@pytest.fixture(autouse=True)
def _fresh_identity_caches() -> Iterator[None]:
    identity_cache_clear()
    jwks_cache_clear()
    yield
    identity_cache_clear()
    jwks_cache_clear()


@pytest.fixture
def roles(db) -> None:
    """The seeded role catalog (re-seeded in case a transactional test elsewhere flushed it)."""
    role_catalog_seed()


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", "alice@example.com", "a-long-password-1")


def authenticate_sync(headers: dict[str, str], client_host: str | None = "127.0.0.1") -> Principal:
    """Drive the async authenticate from a sync test: its database reads then use this test's transaction."""
    return async_to_sync(authenticate)(headers, client_host=client_host)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
