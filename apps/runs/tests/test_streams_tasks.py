from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

from apps.gateway.registry import ToolError, registry
from apps.runs import events, execution, mcp_tasks, services, streams
from apps.runs.models import JobEvent


def _submit(principal, tool="test.slow", arguments=None, **kwargs):
    arguments = arguments if arguments is not None else {"key": "st", "steps": 3, "step_s": 0}
    return services.job_submit(tool=registry.get(tool), arguments=arguments, principal=principal, **kwargs)


async def _collect(job_id, after=None):
    return [(e.event_id, e.kind) async for e in streams.job_events(str(job_id), after=after)]


@pytest.mark.django_db(transaction=True)
async def test_a_reader_attached_before_the_worker_sees_every_event(alice, redis_client):
    # given a reader waiting on a queued job
    job = await sync_to_async(_submit)(alice)
    reader = asyncio.create_task(_collect(job.pk))
    await asyncio.sleep(0.2)
    # when the job runs (in a thread standing in for the worker)
    worker = threading.Thread(target=execution.job_execute, kwargs={"job_id": str(job.pk)})
    worker.start()
    got = await asyncio.wait_for(reader, 10)
    worker.join()
    # then
    assert got == [("1", "state"), ("2", "progress"), ("3", "progress"), ("4", "progress"), ("5", "result")]


@pytest.mark.django_db(transaction=True)
async def test_entries_missing_from_redis_are_filled_from_postgres(alice, redis_client):
    # given a finished job whose stream lost entries 2 and 4 (e.g. Redis restarted, or published out of order)
    job = await sync_to_async(_submit)(alice)
    await sync_to_async(execution.job_execute)(job_id=str(job.pk))
    redis_client.xdel(events.stream_key(job.pk), "0-2", "0-4")
    # when a client reads the stream from the start, and resumes from event 1
    whole = await _collect(job.pk)
    resumed = await _collect(job.pk, after="1")
    # then nothing is missing or repeated
    assert [seq for seq, _ in whole] == ["1", "2", "3", "4", "5"]
    assert [seq for seq, _ in resumed] == ["2", "3", "4", "5"]


@pytest.mark.django_db(transaction=True)
async def test_a_finished_job_without_a_stream_answers_from_postgres_at_once(alice, redis_client):
    # given
    job = await sync_to_async(_submit)(alice)
    await sync_to_async(execution.job_execute)(job_id=str(job.pk))
    redis_client.delete(events.stream_key(job.pk))
    # when / then
    got = await asyncio.wait_for(_collect(job.pk, after="4"), 0.9)
    assert got == [("5", "result")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("after", ["-1", "x", "1.5"])
async def test_a_bad_cursor_is_a_clear_error(after, alice):
    job = await sync_to_async(_submit)(alice)
    with pytest.raises(ToolError) as caught:
        await _collect(job.pk, after=after)
    assert caught.value.code == "invalid_params"


@pytest.mark.django_db(transaction=True)
async def test_an_unknown_job_stream_is_not_found(redis_client):
    with pytest.raises(ToolError) as caught:
        await _collect("00000000-0000-0000-0000-000000000000")
    assert caught.value.code == "job_not_found"


@pytest.mark.django_db(transaction=True)
async def test_async_handlers_report_progress(alice, redis_client):
    job = await sync_to_async(_submit)(alice, tool="test.async_progress", arguments={})
    await sync_to_async(execution.job_execute)(job_id=str(job.pk))
    assert await _collect(job.pk) == [
        ("1", "state"),
        ("2", "progress"),
        ("3", "progress"),
        ("4", "progress"),
        ("5", "result"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("state_after", "status"),
    [(None, "working"), ("run", "completed"), ("cancel", "cancelled"), ("fail", "failed")],
)
def test_jobs_map_to_mcp_task_status(state_after, status, alice, settings):
    # given
    settings.RUNS_TASK_POLL_MS = 750
    job = _submit(
        alice,
        tool="test.permanent" if state_after == "fail" else "test.noop",
        arguments={"key": "m"},
        task_ttl_ms=60_000,
    )
    if state_after in ("run", "fail"):
        execution.job_execute(job_id=str(job.pk))
    elif state_after == "cancel":
        services.job_cancel(job_id=job.pk, principal=alice, reason="stop")
    # when
    legacy = mcp_tasks.task_get(str(job.pk), alice, era="2025-11-25")
    modern = mcp_tasks.task_get(str(job.pk), alice, era="2026-07-28")
    # then
    assert legacy["taskId"] == modern["taskId"] == str(job.pk)
    assert legacy["status"] == modern["status"] == status
    assert (legacy["ttl"], legacy["pollInterval"], modern["ttlMs"], modern["pollIntervalMs"]) == (
        60_000,
        750,
        60_000,
        750,
    )
    assert legacy["createdAt"].endswith("Z")
    assert legacy["lastUpdatedAt"].endswith("Z")
    assert ("result" in modern) == (status != "working")
    if status == "completed":
        assert modern["result"]["structuredContent"] == {"echo": {"key": "m"}}
        assert modern["result"]["isError"] is False
    if status == "failed":
        assert modern["result"]["isError"] is True
        assert modern["result"]["content"][0]["text"] == "bad_document: the document is not valid UTF-8"


@pytest.mark.django_db
def test_tasks_cancel_and_list(alice, bob):
    # given
    first = _submit(alice, tool="test.noop", arguments={"n": 1})
    second = _submit(alice, tool="test.noop", arguments={"n": 2})
    _submit(bob, tool="test.noop", arguments={"n": 3})
    # when
    cancelled = mcp_tasks.task_cancel(str(first.pk), alice, era="2025-11-25")
    page1 = mcp_tasks.task_list(alice, cursor=None, era="2025-11-25", limit=1)
    page2 = mcp_tasks.task_list(alice, cursor=page1["nextCursor"], era="2025-11-25", limit=1)
    # then
    assert cancelled["status"] == "cancelled"
    assert [t["taskId"] for t in page1["tasks"]] == [str(second.pk)]
    assert [t["taskId"] for t in page2["tasks"]] == [str(first.pk)]
    assert "nextCursor" not in page2
    # a terminal task cannot be cancelled in 2025-11-25 (-32602); 2026-07-28 acknowledges with {}
    with pytest.raises(mcp_tasks.TaskError) as caught:
        mcp_tasks.task_cancel(str(first.pk), alice, era="2025-11-25")
    assert caught.value.code == -32602
    assert mcp_tasks.task_cancel(str(first.pk), alice, era="2026-07-28") == {}
    # someone else's task is unknown
    with pytest.raises(mcp_tasks.TaskError):
        mcp_tasks.task_get(str(first.pk), bob, era="2025-11-25")
    with pytest.raises(mcp_tasks.TaskError) as caught:
        mcp_tasks.task_update(str(second.pk), alice, input_responses={})
    assert "not input_required" in caught.value.message


@pytest.mark.django_db(transaction=True)
async def test_tasks_result_waits_for_the_outcome(alice, redis_client):
    # given a queued task and a client blocked in tasks/result
    job = await sync_to_async(_submit)(alice, tool="test.noop", arguments={"z": 1})
    waiting = asyncio.create_task(mcp_tasks.task_result(str(job.pk), alice))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    # when the job runs
    await sync_to_async(execution.job_execute)(job_id=str(job.pk))
    result = await asyncio.wait_for(waiting, 5)
    # then the answer is the CallToolResult the tools/call would have returned
    assert result["structuredContent"] == {"echo": {"z": 1}}
    assert result["_meta"] == {"io.modelcontextprotocol/related-task": {"taskId": str(job.pk)}}
    assert await sync_to_async(JobEvent.objects.filter(job_id=job.pk).count)() == 2
