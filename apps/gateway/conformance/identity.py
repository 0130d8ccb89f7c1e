"""Identity for the conformance run only: the suite sends no credentials and cannot add headers, so loopback
requests are admitted as one fixed test principal. Refuses to work unless the conformance settings are active."""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.accounts.identity import AuthError
from apps.accounts.principal import Principal

__all__ = ["AuthError", "authenticate"]

if not settings.MCP_CONFORMANCE_FIXTURES or settings.PRODUCTION:
    raise ImproperlyConfigured("apps.gateway.conformance.identity is only for the conformance settings profile")

PRINCIPAL = Principal(
    id="test:conformance",
    kind="test",
    name="conformance suite",
    identity_source="conformance",
    roles=frozenset({"admin"}),
    grants=frozenset({"*"}),
)
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


async def authenticate(headers: Mapping[str, str], *, client_host: str | None) -> Principal:
    if client_host not in _LOOPBACK:
        raise AuthError(403, "forbidden", "the conformance profile admits loopback clients only")
    return PRINCIPAL
