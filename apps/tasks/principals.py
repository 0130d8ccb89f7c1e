"""Map a Django user (REST API, admin) to the Principal the services expect.

The identity branch owns RBAC (roles bound to users and groups). Until its role grants are on main, a user's roles are
"admin" for superusers plus the names of their Django groups, and grants come from ROLE_GRANTS below.
"""

from __future__ import annotations

from typing import cast

from django.contrib.auth.models import AbstractBaseUser, AbstractUser, AnonymousUser

from apps.accounts.principal import Principal

ROLE_GRANTS: dict[str, frozenset[str]] = {
    "admin": frozenset({"*"}),
    "operator": frozenset({"task.*"}),
    "agent": frozenset({"task.*"}),
    "support": frozenset({"task.list", "task.dep_graph"}),
    "viewer": frozenset({"task.list", "task.dep_graph"}),
}
# Staff without a role still manage tasks in the admin: they get the operator's task grants.
STAFF_ROLE = "operator"


def principal_for_user(user: AbstractBaseUser | AnonymousUser) -> Principal:
    if not user.is_authenticated:
        return Principal(id="anonymous", kind="user", name="anonymous", identity_source="session")
    user = cast(AbstractUser, user)  # the platform's user model is Django's default one
    roles = set(user.groups.values_list("name", flat=True))
    if user.is_superuser:
        roles.add("admin")
    if user.is_staff and not roles & ROLE_GRANTS.keys():
        roles.add(STAFF_ROLE)
    grants = frozenset().union(*(ROLE_GRANTS.get(role, frozenset()) for role in roles))
    return Principal(
        id=f"user:{user.pk}",
        kind="user",
        name=user.get_username(),
        identity_source="session",
        roles=frozenset(roles),
        grants=grants,
        user_id=user.pk,
    )
