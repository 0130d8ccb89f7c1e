"""The role x tool matrix (Saleor's four-role pattern): anonymous, no role, and each catalog role."""

from __future__ import annotations

import pytest

from apps.accounts.identity import AuthError
from apps.accounts.services import api_token_create, service_account_ensure
from apps.accounts.tests.conftest import authenticate_sync, bearer

TOOLS = [
    "platform.whoami",
    "task.create",
    "task.list",
    "memory.store",
    "memory.search",
    "sandbox.exec",
    "browser.open",
    "run.start",
    "run.resume",
]
# role -> tools it may call (every other tool in TOOLS is denied)
ALLOWED = {
    "admin": set(TOOLS),
    "operator": set(TOOLS),
    "agent": set(TOOLS),
    "support": {"platform.whoami", "task.list", "memory.search", "run.resume"},
    "viewer": {"platform.whoami", "task.list"},
    None: set(),  # an account with no role at all
}


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("role", list(ALLOWED), ids=lambda r: r or "no-role")
def test_role_grants_decide_each_tool(roles, role, tool):
    # given a service account holding `role` (or nothing) and its token
    account = service_account_ensure(name=f"acct-{role or 'none'}", roles=[role] if role else [])
    issued = api_token_create(name="matrix", service_account=account)
    # when it authenticates
    principal = authenticate_sync(bearer(issued.value))
    # then exactly the role's tools are permitted
    assert principal.can_call(tool) is (tool in ALLOWED[role])


def test_anonymous_callers_get_no_principal_at_all(db):
    with pytest.raises(AuthError) as caught:
        authenticate_sync({})
    assert caught.value.status == 401


def test_a_caller_without_roles_is_denied_by_grants_not_by_a_zero_rate_limit(roles):
    account = service_account_ensure(name="nobody")
    principal = authenticate_sync(bearer(api_token_create(name="x", service_account=account).value))
    assert principal.grants == frozenset()
    assert principal.rate_limit_for("platform.whoami") == 60
