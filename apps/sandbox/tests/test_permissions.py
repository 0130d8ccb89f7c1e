"""Who may call the sandbox tools: the role catalog's grants against each tool's permission (the gateway checks
`principal.can_call(tool.permission)` before a call is queued)."""

from __future__ import annotations

import pytest

from apps.accounts.principal import Principal
from apps.accounts.roles import ROLE_CATALOG
from apps.gateway.registry import registry

TOOLS = ["sandbox.create", "sandbox.exec", "sandbox.snapshot", "sandbox.destroy"]


def principal_with(role: str | None) -> Principal:
    grants = frozenset(ROLE_CATALOG[role]["grants"]) if role else frozenset()
    return Principal(
        id=f"test:{role}",
        kind="test",
        name=str(role),
        identity_source="internal",
        roles=frozenset({role} if role else ()),
        grants=grants,
    )


@pytest.mark.parametrize("tool_name", TOOLS)
@pytest.mark.parametrize(
    ("role", "allowed"),
    [(None, False), ("viewer", False), ("support", False), ("agent", True), ("operator", True), ("admin", True)],
)
def test_sandbox_tools_by_role(tool_name, role, allowed):
    # given the tool as declared
    registry.autodiscover()
    spec = registry.get(tool_name)
    assert spec is not None
    # when a caller with the role asks
    # then only roles that run work may call it
    assert principal_with(role).can_call(spec.permission) is allowed
    assert (spec.execution, spec.queue) == ("queued", "sandbox")
