"""Fixtures for the support pages: users of each kind, OTP-verified sessions, audit events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_static.models import StaticDevice

from apps.accounts.services import role_bind, role_catalog_seed
from apps.audit.writer import AuditRecord, audit_record_sync
from apps.support import selectors

PASSWORD = "a-long-password-1"


@pytest.fixture(autouse=True)
def _fresh_chain_cache() -> Iterator[None]:
    keys = [selectors._CHECKPOINT_KEY, selectors._LAST_FULL_KEY]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def make_user(username: str, *, role: str | None = None, staff: bool = False, otp_code: str | None = None) -> Any:
    user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=staff)
    if role:
        role_bind(role=role, user=user)
    device = StaticDevice.objects.create(user=user, name="backup", confirmed=True)
    if otp_code:
        device.token_set.create(token=otp_code)
    return user


def verified_client(user: Any) -> Client:
    """A client signed in as `user` with an OTP-verified session (what the login form leaves behind)."""
    client = Client()
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = StaticDevice.objects.get(user=user).persistent_id
    session.save()
    return client


@pytest.fixture
def users(db) -> dict[str, Any]:
    # Other tests' async writers commit on their own connections: start from an empty log (rolled back after).
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE audit_auditevent")
    role_catalog_seed()
    return {
        "support": make_user("sam-support", role="support"),
        "staff": make_user("stella-staff", staff=True),
        "plain": make_user("pat-plain"),
    }


@pytest.fixture
def client_for(users) -> Callable[[str], Client]:
    """`client_for(kind)`: anonymous, no_otp (password only), plain (verified, no role), support, staff."""

    def make(kind: str) -> Client:
        if kind == "anonymous":
            return Client()
        if kind == "no_otp":
            client = Client()
            client.force_login(users["support"])
            return client
        return verified_client(users[kind])

    return make


def record(**values: Any) -> Any:
    defaults: dict[str, Any] = {"method": "tools/call", "outcome": "ok", "identity_source": "api_token"}
    return audit_record_sync(AuditRecord(**{**defaults, **values}))
