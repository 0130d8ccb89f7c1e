"""MCP tasks backend: jobs seen as MCP tasks (the protocol's "tasks", not the `task.*` work items of apps/tasks).

The gateway calls these for `tasks/get`, `tasks/result`, `tasks/list`, `tasks/cancel` (2025-11-25, experimental
core) and for the 2026-07-28 tasks extension (`tasks/get`, `tasks/update`, `tasks/cancel`). Errors raise
TaskError with the JSON-RPC code to answer with. See docs/jobs-and-runs.md.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from apps.accounts.principal import Principal
from apps.gateway.registry import ToolError
from apps.runs import events, selectors, services, streams
from apps.runs.models import Id, Job, JobEvent, JobEventKind, JobState

Era = Literal["2025-11-25", "2026-07-28"]
INVALID_PARAMS = -32602
RELATED_TASK = "io.modelcontextprotocol/related-task"

# Job state → MCP task status. `input_required` is never produced: no queued tool asks the client for input yet.
STATUS: dict[str, str] = {
    JobState.QUEUED: "working",
    JobState.RUNNING: "working",
    JobState.RETRYING: "working",
    JobState.SUCCEEDED: "completed",
    JobState.FAILED: "failed",
    JobState.TIMED_OUT: "failed",
    JobState.DEAD_LETTERED: "failed",
    JobState.CANCELLED: "cancelled",
}


class TaskError(Exception):
    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data or {}


def _status_message(job: Job) -> str | None:
    error = job.error or {}
    if job.state == JobState.QUEUED:
        return "queued"
    if job.state == JobState.RUNNING:
        return f"running (attempt {job.attempts})"
    if job.state == JobState.RETRYING:
        return f"retrying after attempt {job.attempts}: {error.get('message', '')}".rstrip(": ")
    if job.state == JobState.CANCELLED:
        return job.cancel_reason or "cancelled"
    if job.state in (JobState.FAILED, JobState.TIMED_OUT, JobState.DEAD_LETTERED):
        return f"{job.state}: {error.get('message', '')}".rstrip(": ")
    return None


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z")


def task_from_job(job: Job, *, era: Era) -> dict[str, Any]:
    """The MCP Task object for a job, in the given era's field names."""
    from django.conf import settings

    task: dict[str, Any] = {
        "taskId": str(job.pk),
        "status": STATUS[job.state],
        "createdAt": _iso(job.created_at),
        "lastUpdatedAt": _iso(job.updated_at),
    }
    if (message := _status_message(job)) is not None:
        task["statusMessage"] = message
    if era == "2025-11-25":
        task["ttl"] = job.ttl_ms
        task["pollInterval"] = settings.RUNS_TASK_POLL_MS
    else:
        task["ttlMs"] = job.ttl_ms
        task["pollIntervalMs"] = settings.RUNS_TASK_POLL_MS
        if job.is_terminal:
            outcome = tool_result_from_job(job)
            task["result"] = outcome
    return task


def tool_result_from_job(job: Job) -> dict[str, Any]:
    """The CallToolResult the task's `tools/call` would have returned (a finished job only)."""
    outcome = selectors.job_result(job)
    if outcome is None:
        raise TaskError(INVALID_PARAMS, f"task {job.pk} is still {STATUS[job.state]}")
    meta = {RELATED_TASK: {"taskId": str(job.pk)}}
    if outcome["ok"]:
        return _success(job.pk, outcome["result"])
    error = outcome["error"]
    return {
        "content": [{"type": "text", "text": f"{error['code']}: {error['message']}"}],
        "structuredContent": {"error": error},
        "isError": True,
        "_meta": meta,
    }


def tool_result_from_event(job_id: Id, event: JobEvent) -> dict[str, Any] | None:
    """The CallToolResult of a succeeded job straight from its terminal `result` event, which carries the same
    result the job row holds (services write both in one statement); None for any other event."""
    if event.kind != JobEventKind.RESULT or not isinstance(event.payload.get("result"), dict):
        return None
    return _success(job_id, event.payload["result"])


def _success(job_id: Id, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": json.dumps(result, ensure_ascii=False)}],
        "structuredContent": result,
        "isError": False,
        "_meta": {RELATED_TASK: {"taskId": str(job_id)}},
    }


def _job(task_id: Id, principal: Principal) -> Job:
    """The caller's own job: MCP tasks are principal-scoped even for a `runs.manage` principal (staff use the admin
    or the REST API for other callers' jobs)."""
    try:
        job = selectors.job_get(task_id, principal)
    except ToolError:
        job = None
    if job is None or job.principal_id != principal.id:
        # One answer for "no such job" and "someone else's" (a runs.manage caller included): no oracle.
        raise TaskError(
            INVALID_PARAMS,
            f"unknown task {task_id!s}: check the taskId (tasks are visible to their creator only)",
        )
    return job


def task_get(task_id: Id, principal: Principal, *, era: Era) -> dict[str, Any]:
    return task_from_job(_job(task_id, principal), era=era)


async def task_result(task_id: Id, principal: Principal) -> dict[str, Any]:
    """2025-11-25 `tasks/result`: waits until the task is terminal, then returns its CallToolResult."""
    job = await events.db_call(_job)(task_id, principal)
    if not job.is_terminal:
        async for event in streams.job_events(str(job.pk), after=str(job.last_event_seq)):
            if event.is_terminal:
                break
        job = await events.db_call(_job)(task_id, principal)
    return tool_result_from_job(job)


def task_list(principal: Principal, *, cursor: str | None, era: Era, limit: int = 50) -> dict[str, Any]:
    try:
        jobs, next_cursor = selectors.job_list(principal, cursor=cursor, limit=limit, own_only=True)
    except ToolError as exc:
        raise TaskError(INVALID_PARAMS, exc.message) from None
    page: dict[str, Any] = {"tasks": [task_from_job(j, era=era) for j in jobs]}
    if next_cursor:
        page["nextCursor"] = next_cursor
    return page


def task_cancel(task_id: Id, principal: Principal, *, era: Era) -> dict[str, Any]:
    """2025-11-25: a terminal task is an error (-32602) and the answer is the cancelled Task.
    2026-07-28: cancellation is cooperative and acknowledged with an empty result, even for a finished task."""
    job = _job(task_id, principal)
    if era == "2025-11-25" and job.is_terminal:
        raise TaskError(INVALID_PARAMS, f"task {job.pk} is already {STATUS[job.state]}: it cannot be cancelled")
    job = services.job_cancel(job_id=job.pk, principal=principal, reason="cancelled by the client (tasks/cancel)")
    if era == "2025-11-25":
        if job.state != JobState.CANCELLED:
            raise TaskError(
                INVALID_PARAMS, f"task {job.pk} finished ({STATUS[job.state]}) before it could be cancelled"
            )
        return task_from_job(job, era=era)
    return {}


def task_update(task_id: Id, principal: Principal, *, input_responses: dict[str, Any] | None) -> dict[str, Any]:
    """2026-07-28 `tasks/update`: no queued tool asks for input yet, so no task is ever `input_required`."""
    job = _job(task_id, principal)
    raise TaskError(
        INVALID_PARAMS,
        f"task {job.pk} is {STATUS[job.state]}, not input_required: it is not waiting for inputResponses",
    )
