"""Writes: service accounts, role bindings, API tokens (issue, revoke, rotate) and the first-contact config.

Every change is recorded in the audit trail by the service itself (never by a signal).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts import tokens
from apps.accounts.identity import identity_cache_clear
from apps.accounts.models import ApiToken, Role, RoleBinding, RoleGrant, RoleToolLimit, ServiceAccount
from apps.accounts.roles import seed_roles
from apps.accounts.selectors import role_grants_for  # re-exported for callers of the contract
from apps.audit.writer import AuditRecord, audit_record_on_commit

__all__ = [
    "IssuedToken",
    "api_token_create",
    "api_token_revoke",
    "api_token_rotate",
    "first_contact_config",
    "role_bind",
    "role_catalog_seed",
    "role_grants_for",
    "service_account_deactivate",
    "service_account_ensure",
]

FIRST_CONTACT_TOKEN_NAME = "first contact (make run)"  # noqa: S105  (a label, not a secret)
FIRST_CONTACT_TTL = timedelta(days=30)


@dataclass(frozen=True)
class IssuedToken:
    """A new token row and its full value, which exists only here: show it once, never store it."""

    token: ApiToken
    value: str


def _actor(by: User | None) -> dict[str, Any]:
    if by is None:
        return {"principal_id": "internal:system", "identity_source": "internal"}
    return {"principal_id": f"user:{by.pk}", "identity_source": "session"}


def _audit(action: str, *, by: User | None, detail: dict[str, Any]) -> None:
    """Record the change once it is committed: a rolled-back change leaves no event, and the audit chain's lock
    is never held for the length of a caller's transaction."""
    record = AuditRecord(method=f"accounts.{action}", outcome="ok", detail=detail, **_actor(by))
    audit_record_on_commit(record)


def role_catalog_seed() -> None:
    """Create missing catalog roles (the migration does this; tests that flush the database call it again)."""
    seed_roles(Role, RoleGrant, RoleToolLimit)


@transaction.atomic
def service_account_ensure(
    *, name: str, description: str = "", roles: list[str] | None = None, by: User | None = None
) -> ServiceAccount:
    """The service account `name`, created when absent, holding at least `roles`."""
    account = ServiceAccount.objects.filter(name=name).first()
    if account is None:
        account = ServiceAccount(name=name, description=description, created_by=by)
        account.full_clean()
        account.save()
        _audit("service_account_create", by=by, detail={"service_account": name})
    for role in roles or []:
        role_bind(role=role, service_account=account, by=by)
    return account


@transaction.atomic
def service_account_deactivate(*, account: ServiceAccount, by: User | None = None) -> ServiceAccount:
    """Its tokens stop working: at once in this process, within TOKEN_CACHE_SECONDS elsewhere."""
    if account.is_active:
        account.is_active = False
        account.save(update_fields=["is_active"])
        _audit("service_account_deactivate", by=by, detail={"service_account": account.name})
    transaction.on_commit(identity_cache_clear)
    return account


@transaction.atomic
def role_bind(
    *,
    role: str | Role,
    user: User | None = None,
    group: Group | None = None,
    service_account: ServiceAccount | None = None,
    by: User | None = None,
) -> RoleBinding:
    """Give `role` to exactly one subject; binding twice is a no-op returning the existing binding."""
    if not isinstance(role, Role):
        found = Role.objects.filter(name=role).first()
        if found is None:
            names = ", ".join(Role.objects.order_by("name").values_list("name", flat=True))
            raise ValidationError({"role": f"no role named {role!r}: use one of {names}"})
        role = found
    binding = RoleBinding.objects.filter(role=role, user=user, group=group, service_account=service_account).first()
    if binding is not None:
        return binding
    binding = RoleBinding(role=role, user=user, group=group, service_account=service_account)
    binding.full_clean()
    binding.save()
    _audit("role_bind", by=by, detail={"role": role.name, "subject": binding.subject})
    return binding


@transaction.atomic
def api_token_create(
    *,
    name: str,
    user: User | None = None,
    service_account: ServiceAccount | None = None,
    expires_in: timedelta | None = None,
    by: User | None = None,
) -> IssuedToken:
    """Issue a token for a user or a service account. The returned value is the only copy of the secret."""
    if (user is None) == (service_account is None):
        raise ValidationError("a token belongs to exactly one of: user, service account")
    if expires_in is not None and expires_in <= timedelta(0):
        raise ValidationError({"expires_at": "the expiry must be in the future"})
    value, public_id, secret_hash = tokens.generate()
    token = ApiToken(
        public_id=public_id,
        secret_hash=secret_hash,
        name=name,
        user=user,
        service_account=service_account,
        created_by=by,
        expires_at=timezone.now() + expires_in if expires_in is not None else None,
    )
    token.full_clean()
    token.save()
    _audit("api_token_create", by=by, detail={"prefix": token.prefix, "owner": token.owner, "name": name})
    return IssuedToken(token=token, value=value)


@transaction.atomic
def api_token_revoke(*, token: ApiToken, by: User | None = None) -> ApiToken:
    """Stop a token working: at once in this process, within TOKEN_CACHE_SECONDS in every other one."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        _audit("api_token_revoke", by=by, detail={"prefix": token.prefix, "owner": token.owner})
    transaction.on_commit(identity_cache_clear)
    return token


@transaction.atomic
def api_token_rotate(*, token: ApiToken, by: User | None = None) -> IssuedToken:
    """Replace a token with a new one for the same owner, name and lifetime; the old one is revoked."""
    lifetime = token.expires_at - token.created_at if token.expires_at is not None else None
    issued = api_token_create(
        name=token.name,
        user=token.user,
        service_account=token.service_account,
        expires_in=lifetime,
        by=by,
    )
    api_token_revoke(token=token, by=by)
    return issued


def first_contact_config(base_url: str) -> dict[str, Any]:
    """An `mcp.json` client configuration with a fresh token for the first admin (printed by `make run`).

    The token belongs to the first superuser (who holds the admin role) and expires after 30 days.
    """
    admin = get_user_model().objects.filter(is_superuser=True, is_active=True).order_by("pk").first()
    if admin is None:
        raise ValidationError("no active superuser yet: run `manage.py ensure_admin` first")
    # Each `make run` prints a fresh token; earlier ones that no client ever used are revoked so they do not pile
    # up, while a token an agent is already configured with keeps working.
    for unused in ApiToken.objects.filter(
        user=admin, name=FIRST_CONTACT_TOKEN_NAME, last_used_at__isnull=True, revoked_at__isnull=True
    ):
        api_token_revoke(token=unused)
    issued = api_token_create(name=FIRST_CONTACT_TOKEN_NAME, user=admin, expires_in=FIRST_CONTACT_TTL)
    return {
        "mcpServers": {
            "mcpplat": {
                "type": "http",
                "url": f"{base_url.rstrip('/')}/mcp",
                "headers": {"Authorization": f"Bearer {issued.value}"},
            }
        }
    }
