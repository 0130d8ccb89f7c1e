"""Namespaces: each principal has its own; shared ones need a grant (principal or role, read or write)."""

from __future__ import annotations

import pytest

from apps.gateway.registry import ToolError
from apps.memory.models import MemoryNamespaceGrant
from apps.memory.tools import memory_compact, memory_search, memory_store, memory_timeline

pytestmark = pytest.mark.django_db


def test_namespaces_isolate_principals(alice, bob):
    # given alice's memory
    memory_store(alice, {"items": [{"content": "Alice's locker code is 4512."}]})
    # when bob searches his own namespace and then alice's
    own = memory_search(bob, {"query": "locker code"})
    with pytest.raises(ToolError) as error:
        memory_search(bob, {"query": "locker code", "namespace": "user:alice"})
    # then he sees nothing of hers, and the error does not say whether her namespace exists
    assert own == {**own, "namespace": "user:bob", "hits": []}
    assert error.value.code == "namespace_not_found"
    assert "your own namespace is 'user:bob'" in error.value.message
    assert error.value.data == {"field": "namespace"}


@pytest.mark.parametrize(
    "tool_call",
    [
        lambda ctx: memory_store(ctx, {"namespace": "team/ops", "items": [{"content": "x"}]}),
        lambda ctx: memory_search(ctx, {"namespace": "team/ops", "query": "x"}),
        lambda ctx: memory_timeline(ctx, {"namespace": "team/ops"}),
        lambda ctx: memory_compact(ctx, {"namespace": "team/ops"}),
    ],
)
def test_unknown_namespace_is_refused_by_every_tool(bob, tool_call):
    with pytest.raises(ToolError) as error:
        tool_call(bob)
    assert error.value.code == "namespace_not_found"


def test_role_grant_shares_a_namespace_read_only_then_writable(alice, bob):
    # given a shared namespace alice may write and bob's role may read
    MemoryNamespaceGrant.objects.create(namespace="team/research", principal_id="user:alice", can_write=True)
    grant = MemoryNamespaceGrant.objects.create(namespace="team/research", role="research", can_write=False)
    memory_store(alice, {"namespace": "team/research", "items": [{"content": "The survey closes on May 3."}]})
    # when bob reads and tries to write
    found = memory_search(bob, {"namespace": "team/research", "query": "survey closes"})
    with pytest.raises(ToolError) as error:
        memory_store(bob, {"namespace": "team/research", "items": [{"content": "Bob was here."}]})
    # then reading works and writing is refused by name
    assert [hit["content"] for hit in found["hits"]] == ["The survey closes on May 3."]
    assert error.value.code == "namespace_read_only"
    # when the grant allows writing
    grant.can_write = True
    grant.save(update_fields=["can_write"])
    stored = memory_store(bob, {"namespace": "team/research", "items": [{"content": "Bob was here."}]})
    # then bob writes, with his id in the provenance
    assert stored["namespace"] == "team/research"
    assert stored["stored"] == 1
