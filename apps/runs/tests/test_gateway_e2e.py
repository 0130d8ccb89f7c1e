"""Queued tools and runs through the real gateway (daphne) with the official MCP SDK client and real workers."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager

import httpx2
import orjson
import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from mcp import Client, types
from mcp.client.extension import ClientExtension
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from apps.audit.models import AuditEvent
from apps.runs.models import Job
from apps.runs.tests.conftest import FAST_RUNTIME_ENV
from apps.runs.tests.processes import Gateway
from tests.e2e.test_http import legacy_headers, legacy_session

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


async def test_a_call_whose_gateway_was_killed_is_audited_with_its_final_outcome(gateway, agent_token, redis_client):
    # given a queued call streaming progress through the gateway (acknowledged: its job runs)
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with connect(gateway.url, agent_token) as client:
        call = asyncio.create_task(
            client.call_tool(
                "test.slow", {"key": "gw-audit", "steps": 10, "step_s": 0.1}, progress_callback=on_progress
            )
        )
        for _ in range(300):
            if seen:
                break
            await asyncio.sleep(0.02)
        assert seen
        # when the gateway is killed with SIGKILL before the result, and the job finishes with no gateway alive
        gateway.kill()
        with pytest.raises(Exception):  # noqa: B017, PT011  (the transport error type is the SDK's business)
            await asyncio.wait_for(call, 30)
    job = await sync_to_async(Job.objects.get)(tool="test.slow", arguments__key="gw-audit")
    for _ in range(300):
        await sync_to_async(job.refresh_from_db)()
        if job.is_terminal:
            break
        await asyncio.sleep(0.05)
    gateway.start()
    # then the call is audited: accepted when its job was stored, and its final outcome when the worker ended it
    rows = AuditEvent.objects.filter(job_id=str(job.pk)).order_by("created_at")
    for _ in range(100):  # the worker's drain thread moves them from the outbox into the chain right after commit
        audited = await sync_to_async(lambda: list(rows.values_list("method", "outcome", "tool")))()
        if len(audited) >= 2:
            break
        await asyncio.sleep(0.05)
    assert job.state == "succeeded"
    assert audited == [("tools/call", "accepted", "test.slow"), ("job.finished", "ok", "test.slow")]


# ------------------------------------------------------------------------------ MCP tasks (2025-11-25) via the SDK


async def _create_task(client: Client, name: str, arguments: dict, ttl: int) -> types.CreateTaskResult:
    """A task-augmented tools/call. The SDK (2.3.0) validates every tools/call answer as a CallToolResult, so this
    sends it the way `ClientSession.send_request` does, minus that check, and validates a CreateTaskResult."""
    request = types.CallToolRequest(
        params=types.CallToolRequestParams(name=name, arguments=arguments, task=types.TaskMetadata(ttl=ttl))
    )
    data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
    opts: dict = {}
    client.session._stamp(data, opts)
    raw = await client.session._dispatcher.send_raw_request(data["method"], data.get("params"), opts)
    return types.CreateTaskResult.model_validate(raw, by_name=False)


async def _task_status(client: Client, task_id: str, want: str, timeout_s: float = 15) -> types.GetTaskResult:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        got = await client.session.send_request(
            types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task_id)), types.GetTaskResult
        )
        if got.status == want or asyncio.get_running_loop().time() > deadline:
            return got
        await asyncio.sleep(0.05)


async def test_sdk_client_task_augmented_call_get_result_and_cancel(gateway, agent_token, redis_client):
    async with connect(gateway.url, agent_token, "legacy") as client:
        # given a 2025-11-25 session: the server declares tasks, the queued tool supports them
        tasks_cap = client.server_capabilities.tasks
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert tasks_cap is not None
        assert tasks_cap.requests.tools.call is not None
        assert tasks_cap.list is not None
        assert tasks_cap.cancel is not None
        assert listed["test.slow"].execution.task_support == "optional"
        assert listed["test.flaky"].execution.task_support == "optional"  # queued → at least optional

        # when the queued tool is called as a task
        created = await _create_task(client, "test.slow", {"key": "task-ok", "steps": 3, "step_s": 0.05}, 120_000)
        task_id = created.task.task_id
        # then it answers at once with a working task, which completes; tasks/result returns the tool's result
        assert created.task.status == "working"
        assert created.task.ttl == 120_000
        done = await _task_status(client, task_id, "completed")
        assert done.status == "completed"
        result = await client.session.send_request(
            types.GetTaskPayloadRequest(params=types.GetTaskPayloadRequestParams(task_id=task_id)),
            types.CallToolResult,
        )
        assert result.is_error is False
        assert result.structured_content == {"steps": 3}
        assert result.meta == {"io.modelcontextprotocol/related-task": {"taskId": task_id}}

        # when another task is cancelled while it runs
        long = await _create_task(client, "test.slow", {"key": "task-cancel", "steps": 100, "step_s": 0.1}, 60_000)
        long_id = long.task.task_id
        for _ in range(200):
            if redis_client.exists("task-cancel:starts"):
                break
            await asyncio.sleep(0.02)
        cancelled = await client.session.send_request(
            types.CancelTaskRequest(params=types.CancelTaskRequestParams(task_id=long_id)), types.CancelTaskResult
        )
        # then it is cancelled, its worker stops, and tasks/result says so
        assert cancelled.status == "cancelled"
        assert (await _task_status(client, long_id, "cancelled")).status == "cancelled"
        payload = await client.session.send_request(
            types.GetTaskPayloadRequest(params=types.GetTaskPayloadRequestParams(task_id=long_id)),
            types.CallToolResult,
        )
        assert payload.is_error is True
        assert payload.structured_content["error"]["code"] == "cancelled"
        for _ in range(100):
            if redis_client.exists("task-cancel:stopped_at"):
                break
            await asyncio.sleep(0.02)
        assert redis_client.exists("task-cancel:stopped_at")
        assert redis_client.get("task-cancel:completions") is None

        # tasks/list shows both, newest first; cancelling a finished task and an unknown id are -32602
        listed_tasks = await client.session.send_request(types.ListTasksRequest(), types.ListTasksResult)
        assert [t.task_id for t in listed_tasks.tasks][:2] == [long_id, task_id]
        with pytest.raises(MCPError) as finished:
            await client.session.send_request(
                types.CancelTaskRequest(params=types.CancelTaskRequestParams(task_id=task_id)),
                types.CancelTaskResult,
            )
        assert finished.value.error.code == -32602
        assert task_id in finished.value.error.message
        unknown = str(uuid.uuid4())
        with pytest.raises(MCPError) as missing:
            await client.session.send_request(
                types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=unknown)), types.GetTaskResult
            )
        assert missing.value.error.code == -32602
        assert unknown in missing.value.error.message


async def test_tasks_are_private_to_their_creator(gateway, agent_token, redis_client):
    from apps.accounts import services

    # given a task created by one agent, and a second agent with the same role
    account = await sync_to_async(services.service_account_ensure)(name="runs-agent-2", roles=["runs-e2e"])
    other = (await sync_to_async(services.api_token_create)(name="other", service_account=account)).value
    async with connect(gateway.url, agent_token, "legacy") as client:
        created = await _create_task(client, "test.noop", {"x": 1}, 60_000)
    # when the other agent asks for it, lists or cancels it
    async with connect(gateway.url, other, "legacy") as client:
        with pytest.raises(MCPError) as seen:
            await client.session.send_request(
                types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=created.task.task_id)),
                types.GetTaskResult,
            )
        listed = await client.session.send_request(types.ListTasksRequest(), types.ListTasksResult)
    # then it is unknown to it
    assert seen.value.error.code == -32602
    assert created.task.task_id in seen.value.error.message
    assert listed.tasks == []


class _TasksExtension(ClientExtension):
    identifier = "io.modelcontextprotocol/tasks"


async def _raw(client: Client, method: str, params: dict) -> dict:
    data = {"method": method, "params": params}
    opts: dict = {}
    client.session._stamp(data, opts)
    return await client.session._dispatcher.send_raw_request(method, params, opts)


async def test_tasks_extension_2026(gateway, agent_token, redis_client):
    headers = {"authorization": f"Bearer {agent_token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http,
        Client(
            streamable_http_client(gateway.url, http_client=http), mode="2026-07-28", extensions=[_TasksExtension()]
        ) as client,
    ):
        # given a 2026-07-28 client that declared the tasks extension
        discovered = await _raw(client, "server/discover", {})
        assert "io.modelcontextprotocol/tasks" in discovered["capabilities"]["extensions"]
        await client.list_tools()
        # when it calls a queued tool, the server answers with a task
        created = await _raw(
            client, "tools/call", {"name": "test.slow", "arguments": {"key": "ext-ok", "steps": 2, "step_s": 0.02}}
        )
        assert created["resultType"] == "task"
        task_id = created["task"]["taskId"]
        assert created["task"]["status"] == "working"
        # then tasks/get reaches completed and carries the result
        for _ in range(300):
            got = await _raw(client, "tasks/get", {"taskId": task_id})
            if got["status"] == "completed":
                break
            await asyncio.sleep(0.05)
        assert got["status"] == "completed"
        assert got["result"]["structuredContent"] == {"steps": 2}
        assert "ttlMs" in got
        # tasks/cancel of a finished task is acknowledged; tasks/update has no input to take; unknown ids are -32602
        assert (await _raw(client, "tasks/cancel", {"taskId": task_id})).get("resultType") == "complete"
        with pytest.raises(MCPError) as update:
            await _raw(client, "tasks/update", {"taskId": task_id, "inputResponses": {}})
        assert update.value.error.code == -32602
        unknown = str(uuid.uuid4())
        with pytest.raises(MCPError) as missing:
            await _raw(client, "tasks/get", {"taskId": unknown})
        assert missing.value.error.code == -32602
        assert unknown in missing.value.error.message


def _sse_events(text: str) -> list[tuple[str | None, dict]]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event_id, data = None, []
        for line in block.split("\n"):
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            out.append((event_id, orjson.loads("\n".join(data))))
    return out


async def test_gateway_killed_mid_stream_then_last_event_id_resumes_the_call(gateway, agent_token, redis_client):
    session = await asyncio.to_thread(legacy_session, gateway, agent_token)
    headers = legacy_headers(agent_token, session)
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=60)) as http:
        await http.post(gateway.url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        # given a queued call streaming progress over SSE
        body = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {
                "name": "test.slow",
                "arguments": {"key": "lei-kill", "steps": 12, "step_s": 0.1},
                "_meta": {"progressToken": "p1"},
            },
        }
        seen: list[tuple[str | None, dict]] = []
        buffer = ""
        async with http.stream("POST", gateway.url, headers=headers, json=body) as response:
            async for chunk in response.aiter_text():
                buffer += chunk
                seen = _sse_events(buffer if buffer.endswith("\n\n") else buffer.rsplit("\n\n", 1)[0])
                if len(seen) >= 3:
                    break
            # when the gateway is killed with SIGKILL mid-stream and restarted
            gateway.kill()
        gateway.start()
        last_id = seen[-1][0]
        assert last_id is not None
        # then a GET with Last-Event-ID on the new process gets every remaining event, then the result once
        resumed = await http.get(gateway.url, headers={**headers, "last-event-id": last_id})
        rest = _sse_events(resumed.text)
    progress = [m["params"]["progress"] for _, m in seen + rest if m.get("method") == "notifications/progress"]
    responses = [m for _, m in rest if "result" in m]
    assert progress == list(range(1, 13))
    assert len(responses) == 1
    assert responses[0]["id"] == 7
    assert responses[0]["result"]["structuredContent"] == {"steps": 12}
    assert redis_client.get("lei-kill:completions") == b"1"
