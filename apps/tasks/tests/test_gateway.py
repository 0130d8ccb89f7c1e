"""Through the real gateway (daphne + /mcp, API tokens, RBAC, audit): 20 agents call task.next_action(claim=true)
at once and each gets a distinct task or a clear "nothing ready" answer."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from asgiref.sync import sync_to_async

from apps.tasks.tests.mcp_call import tool_result, tools_call
from tests.e2e.conftest import mcp_server  # noqa: F401 - the gateway's fixture: a real daphne on the test database

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _setup(agents: int, ready: int) -> tuple[list[str], list[int]]:
    from apps.accounts import services as accounts
    from apps.tasks import services
    from apps.tasks.tests.conftest import make_principal

    accounts.role_catalog_seed()
    owner = make_principal("gw-owner")
    project = services.project_create(principal=owner, key="gw-swarm")
    services.project_grant(principal=owner, project=project, subject="role:agent", access="write")
    ids = [services.task_create(principal=owner, project="gw-swarm", title=f"r{i}").pk for i in range(ready)]
    services.task_create(principal=owner, project="gw-swarm", title="waits", depends_on=[ids[0]])
    tokens = []
    for i in range(agents):
        account = accounts.service_account_ensure(name=f"gw-agent-{i}", roles=["agent"])
        tokens.append(accounts.api_token_create(name=f"gw-agent-{i}", service_account=account).value)
    return tokens, ids


async def _claim(client: httpx.AsyncClient, url: str, token: str, request_id: int) -> dict:
    arguments = {"project": "gw-swarm", "claim": True}
    response = await client.post(url, **tools_call("task.next_action", arguments, token, request_id))
    return tool_result(response, request_id)


async def test_twenty_agents_claim_through_the_gateway(mcp_server):  # noqa: F811 - the imported fixture
    # given 20 agents (service accounts with the agent role and their own tokens) and 15 ready tasks
    tokens, ready = await sync_to_async(_setup)(20, 15)
    # when they all claim at once
    async with httpx.AsyncClient(timeout=60) as client:
        results = await asyncio.gather(*(_claim(client, mcp_server.url, t, n) for n, t in enumerate(tokens)))
    # then no call failed, 15 distinct tasks were claimed and 5 agents were told nothing is ready
    assert [r for r in results if r.get("isError")] == []
    claimed = [r["structuredContent"]["claimed"]["id"] for r in results if r["structuredContent"]["claimed"]]
    assert sorted(claimed) == sorted(ready)
    nothing = [r["structuredContent"]["message"] for r in results if r["structuredContent"]["claimed"] is None]
    assert len(nothing) == 5
    assert all(m.startswith("nothing ready: ") for m in nothing), nothing
    assignees = await sync_to_async(_assignees)(ready)
    assert len(set(assignees)) == 15
    assert all(a.startswith("service:") for a in assignees)


def _assignees(ids: list[int]) -> list[str]:
    from apps.tasks.models import Task

    return list(Task.objects.filter(pk__in=ids).values_list("assignee", flat=True))
