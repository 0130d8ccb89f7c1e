"""Map a Django user (REST API, admin) to the Principal the services expect, with the identity app's RBAC:
roles bound to the user or its groups (superusers hold `admin`), grants from those roles."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from apps.accounts import selectors as accounts
from apps.accounts.principal import Principal

ANONYMOUS = Principal(id="anonymous", kind="user", name="anonymous", identity_source="session")


def principal_for_user(user: AbstractBaseUser | AnonymousUser) -> Principal:
    if not user.is_authenticated:
        return ANONYMOUS
    return accounts.principal_for_user(user, identity_source="session")  # type: ignore[arg-type]
