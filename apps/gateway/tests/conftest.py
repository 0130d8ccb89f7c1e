from __future__ import annotations

import pytest


@pytest.fixture
def admin_token(transactional_db, redis_client) -> str:
    """An API token of a service account holding the admin role: every tool is callable."""
    from apps.accounts import services

    services.role_catalog_seed()
    account = services.service_account_ensure(name="hostile-admin", roles=["admin"])
    return services.api_token_create(name="hostile token", service_account=account).value
