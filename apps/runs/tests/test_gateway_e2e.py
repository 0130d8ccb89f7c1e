"""Queued tools and runs through the real gateway (daphne) with the official MCP SDK client and real workers."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import asynccontextmanager

import httpx2
import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from apps.runs.models import Job
from apps.runs.tests.conftest import FAST_RUNTIME_ENV
from apps.runs.tests.processes import Gateway

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, shared_worker) -> Iterator[Gateway]:
    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    server = Gateway(
        {
            **os.environ,
            **FAST_RUNTIME_ENV,
            "DJANGO_SETTINGS_MODULE": "mcpplat.settings.test",
            "MCPPLAT_TEST_WORKER_DB": db_name,
        }
    )
    server.start()
    yield server
    server.kill(signal.SIGTERM)


@pytest.fixture
def agent_token(transactional_db, redis_client) -> str:
    from apps.accounts import services
    from apps.accounts.models import Role, RoleGrant

    services.role_catalog_seed()
    role = Role.objects.create(name="runs-e2e", description="runs end-to-end tests", requests_per_minute=600)
    RoleGrant.objects.create(role=role, pattern="test.*")
    RoleGrant.objects.create(role=role, pattern="run.*")
    account = services.service_account_ensure(name="runs-agent", roles=["runs-e2e"])
    return services.api_token_create(name="runs token", service_account=account).value


@asynccontextmanager
async def connect(url: str, token: str, mode: str = "legacy"):
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=60)) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_queued_tool_streams_progress_then_its_result(gateway, agent_token, redis_client, mode):
    # given an agent calling a queued tool that reports three steps
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with connect(gateway.url, agent_token, mode) as client:
        # when
        result = await client.call_tool(
            "test.slow", {"key": f"gw-{mode}", "steps": 3, "step_s": 0.02}, progress_callback=on_progress
        )
    # then the worker's progress reached the client in order, then the result
    assert result.is_error is False
    assert result.structured_content == {"steps": 3}
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    job = await sync_to_async(Job.objects.get)(tool="test.slow", arguments__key=f"gw-{mode}")
    assert (job.state, job.attempts) == ("succeeded", 1)


async def test_gateway_killed_mid_stream_then_run_resume_returns_every_event(gateway, agent_token, redis_client):
    # given a run, and a queued call attached to it, streaming progress through the gateway
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with connect(gateway.url, agent_token) as client:
        started = await client.call_tool("run.start", {"name": "resumable", "lease_seconds": 120})
        run_id = started.structured_content["run_id"]
        call = asyncio.create_task(
            client.call_tool(
                "test.slow",
                {"key": "gw-kill", "steps": 15, "step_s": 0.1},
                progress_callback=on_progress,
                meta={"io.mcpplat/runId": run_id},
            )
        )
        for _ in range(300):
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.02)
        assert len(seen) >= 3
        # when the gateway is killed with SIGKILL mid-stream, and a fresh one starts
        gateway.kill()
        with pytest.raises(Exception):  # noqa: B017, PT011  (the transport error type is the SDK's business)
            await asyncio.wait_for(call, 30)
    gateway.start()
    # then the client resumes the run from a new gateway process and gets every event, in order, no gaps
    async with connect(gateway.url, agent_token) as client:
        for _ in range(200):
            resumed = (await client.call_tool("run.resume", {"run_id": run_id, "after_seq": 0})).structured_content
            if any(e["kind"] == "job.result" for e in resumed["events"]):
                break
            await asyncio.sleep(0.1)
        tail = (await client.call_tool("run.resume", {"run_id": run_id, "after_seq": 5})).structured_content
    events = resumed["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["payload"]["progress"] for e in events if e["kind"] == "job.progress"] == list(range(1, 16))
    assert [e["kind"] for e in events if e["kind"] in {"job.result", "job.error"}] == ["job.result"]
    assert [e["seq"] for e in tail["events"]] == [e["seq"] for e in events[5:]]
    assert redis_client.get("gw-kill:completions") == b"1"
