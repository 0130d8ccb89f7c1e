"""Reads: which roles a subject holds, what they grant, and the Principal a credential stands for."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, User
from django.db.models import Q, QuerySet

from apps.accounts.models import ApiToken, Role, RoleBinding, ServiceAccount
from apps.accounts.principal import IdentitySource, Principal

SUPERUSER_ROLE = "admin"  # a Django superuser always holds it, bound or not
NO_ROLE_RATE_LIMIT = 60  # requests/minute for a caller with no role: enough to learn it may call nothing


@dataclass(frozen=True)
class RoleSet:
    names: frozenset[str]
    grants: frozenset[str]
    rate_limit_per_minute: int | None
    tool_rate_limits: tuple[tuple[str, int], ...]


def role_names_for_user(user: AbstractBaseUser) -> set[str]:
    groups = user.groups.all() if hasattr(user, "groups") else []
    names = set(
        RoleBinding.objects.filter(Q(user=user) | Q(group__in=groups)).values_list("role__name", flat=True).distinct()
    )
    if getattr(user, "is_superuser", False):
        names.add(SUPERUSER_ROLE)
    return names


def role_names_for_service_account(account: ServiceAccount) -> set[str]:
    return set(RoleBinding.objects.filter(service_account=account).values_list("role__name", flat=True))


def role_set(names: Iterable[str]) -> RoleSet:
    """Union of the roles' grants; rate limits of the most generous role (None = unlimited wins)."""
    roles = list(Role.objects.filter(name__in=set(names)).prefetch_related("grants", "tool_limits"))
    if not roles:
        return RoleSet(frozenset(), frozenset(), NO_ROLE_RATE_LIMIT, ())
    grants = frozenset(g.pattern for r in roles for g in r.grants.all())
    general = (
        None if any(r.requests_per_minute is None for r in roles) else max(r.requests_per_minute or 0 for r in roles)
    )
    overrides: dict[str, int] = {}
    for pattern in {limit.tool for r in roles for limit in r.tool_limits.all()}:
        per_role = []
        for role in roles:
            own = next((t.requests_per_minute for t in role.tool_limits.all() if t.tool == pattern), None)
            per_role.append(own if own is not None else role.requests_per_minute)
        if all(n is not None for n in per_role):
            overrides[pattern] = max(n for n in per_role if n is not None)
    return RoleSet(
        names=frozenset(r.name for r in roles),
        grants=grants,
        rate_limit_per_minute=general,
        tool_rate_limits=tuple(sorted(overrides.items())),
    )


def role_grants_for(names: Iterable[str]) -> frozenset[str]:
    return role_set(names).grants


def principal_for_user(
    user: AbstractBaseUser,
    *,
    identity_source: IdentitySource,
    credential_id: str | None = None,
    scopes: frozenset[str] = frozenset(),
    principal_id: str | None = None,
    extra_roles: Iterable[str] = (),
) -> Principal:
    roles = role_set(role_names_for_user(user) | set(extra_roles))
    return Principal(
        id=principal_id or f"user:{user.pk}",
        kind="user",
        name=user.get_username(),
        identity_source=identity_source,
        roles=roles.names,
        grants=roles.grants,
        user_id=user.pk,
        scopes=scopes,
        credential_id=credential_id,
        rate_limit_per_minute=roles.rate_limit_per_minute,
        tool_rate_limits=roles.tool_rate_limits,
    )


def principal_for_service_account(account: ServiceAccount, *, credential_id: str | None) -> Principal:
    roles = role_set(role_names_for_service_account(account))
    return Principal(
        id=f"service:{account.pk}",
        kind="service",
        name=account.name,
        identity_source="api_token",
        roles=roles.names,
        grants=roles.grants,
        credential_id=credential_id,
        rate_limit_per_minute=roles.rate_limit_per_minute,
        tool_rate_limits=roles.tool_rate_limits,
    )


def principal_for_roles(
    *, principal_id: str, name: str, identity_source: IdentitySource, roles: Iterable[str], **extra: object
) -> Principal:
    """A principal not backed by a platform user (an OAuth subject given the default role)."""
    found = role_set(roles)
    return Principal(
        id=principal_id,
        kind="oauth",
        name=name,
        identity_source=identity_source,
        roles=found.names,
        grants=found.grants,
        rate_limit_per_minute=found.rate_limit_per_minute,
        tool_rate_limits=found.tool_rate_limits,
        **extra,  # type: ignore[arg-type]
    )


def user_for_login(login: str) -> AbstractBaseUser | None:
    """The active platform user whose email or username is `login` (case-insensitive), if exactly one."""
    user_model = get_user_model()
    candidates = list(
        user_model.objects.filter(Q(email__iexact=login) | Q(**{f"{user_model.USERNAME_FIELD}__iexact": login}))[:2]
    )
    return candidates[0] if len(candidates) == 1 else None


def api_tokens_of(*, user: User | None = None, account: ServiceAccount | None = None) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user) if user is not None else ApiToken.objects.filter(service_account=account)
