"""Tailnet identity: `Tailscale-User-Login` as set by `tailscale serve` — believed only from a trusted proxy.

The "proxy" here is a fake tailscaled: the test passes the headers and the client address a real one would.
"""

from __future__ import annotations

import pytest

from apps.accounts.identity import AuthError
from apps.accounts.services import role_bind
from apps.accounts.tests.conftest import authenticate_sync

FAKE_TAILSCALED = "100.100.100.100"


@pytest.fixture
def tailnet(settings, roles):
    settings.TAILNET_TRUSTED_PROXIES = [FAKE_TAILSCALED, "127.0.0.1/32"]
    settings.TAILNET_ALLOWED_LOGINS = ["*@example.com"]
    return settings


def _headers(login: str) -> dict[str, str]:
    return {"tailscale-user-login": login, "tailscale-user-name": "Alice"}


def test_identity_headers_from_a_trusted_proxy_map_to_the_user(tailnet, alice):
    role_bind(role="operator", user=alice)
    principal = authenticate_sync(_headers("Alice@Example.com"), client_host=FAKE_TAILSCALED)
    assert principal.id == f"user:{alice.pk}"
    assert principal.identity_source == "tailnet"
    assert principal.roles == frozenset({"operator"})
    assert principal.credential_id == "tailnet:alice@example.com"


@pytest.mark.parametrize("client_host", ["203.0.113.7", "100.100.100.101", None, "/run/socket"])
def test_identity_headers_from_anyone_else_are_401(tailnet, alice, client_host):
    with pytest.raises(AuthError) as caught:
        authenticate_sync(_headers("alice@example.com"), client_host=client_host)
    assert caught.value.status == 401
    assert "TAILNET_TRUSTED_PROXIES" in caught.value.message


def test_identity_headers_are_ignored_when_no_proxy_is_trusted(settings, alice):
    settings.TAILNET_TRUSTED_PROXIES = []
    with pytest.raises(AuthError, match="TAILNET_TRUSTED_PROXIES"):
        authenticate_sync(_headers("alice@example.com"), client_host="127.0.0.1")


def test_a_login_outside_the_allow_list_is_403(tailnet, db, django_user_model):
    django_user_model.objects.create_user("mallory", "mallory@evil.example", "a-long-password-1")
    with pytest.raises(AuthError) as caught:
        authenticate_sync(_headers("mallory@evil.example"), client_host=FAKE_TAILSCALED)
    assert (caught.value.status, caught.value.code) == (403, "forbidden")
    assert "TAILNET_ALLOWED_LOGINS" in caught.value.message


def test_an_allowed_login_without_a_platform_user_is_403(tailnet, db):
    with pytest.raises(AuthError, match="no active platform user"):
        authenticate_sync(_headers("bob@example.com"), client_host=FAKE_TAILSCALED)
