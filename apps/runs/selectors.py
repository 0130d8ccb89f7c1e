"""Reads for jobs and runs, with fetch-and-authorize helpers.

Unknown ids and ids owned by someone else give the same "not found" error, so ids cannot be probed.
Principals granted `runs.manage` (operators, staff) see every job and run.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from apps.accounts.principal import Principal
from apps.gateway.registry import ToolError
from apps.runs.models import Id, Job, JobEvent, JobState, Run, RunEvent

MANAGE_PERMISSION = "runs.manage"
RUN_EVENTS_PAGE = 1000


def can_manage(principal: Principal) -> bool:
    return principal.can_call(MANAGE_PERMISSION)


def _uuid(value: object, what: str) -> uuid.UUID | None:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def job_get(job_id: Id, principal: Principal) -> Job:
    """The job if `principal` may see it; ToolError("job_not_found") otherwise."""
    pk = _uuid(job_id, "job")
    job = Job.objects.filter(pk=pk).first() if pk else None
    if job is None or (job.principal_id != principal.id and not can_manage(principal)):
        raise ToolError("job_not_found", f"no job {job_id!s}: check the id (jobs are visible to their caller only)")
    return job


def job_result(job: Job) -> dict[str, Any] | None:
    """The outcome of a finished job, None while it is still queued/running/retrying.

    `{"ok": True, "result": {...}}` for a success (the tool's structuredContent), otherwise
    `{"ok": False, "state": <state>, "error": {"code", "message", "data"}}`.
    """
    if job.state == JobState.SUCCEEDED:
        return {"ok": True, "result": job.result or {}}
    if job.state == JobState.CANCELLED:
        reason = job.cancel_reason or "cancelled"
        return {"ok": False, "state": job.state, "error": {"code": "cancelled", "message": reason, "data": {}}}
    if job.is_terminal:
        error = dict(job.error or {})
        if job.state == JobState.TIMED_OUT and not error:
            error = {"code": "timeout", "message": f"the tool ran longer than {job.timeout_s:g} s"}
        error.pop("retryable", None)
        error.setdefault("data", {})
        return {"ok": False, "state": job.state, "error": error}
    return None


def job_list(
    principal: Principal,
    *,
    cursor: str | None = None,
    limit: int = 50,
    run_id: str | None = None,
    own_only: bool = False,
) -> tuple[list[Job], str | None]:
    """The principal's jobs (every job for a manager unless `own_only`), newest first, paginated by an opaque
    cursor (the last job's id)."""
    everyone = can_manage(principal) and not own_only
    jobs: QuerySet[Job] = Job.objects.all() if everyone else Job.objects.filter(principal_id=principal.id)
    visible = jobs  # a cursor is looked up among these only: another caller's job id is no cursor (no oracle)
    if run_id:
        jobs = jobs.filter(run_id=_uuid(run_id, "run") or uuid.UUID(int=0))
    jobs = jobs.order_by("-created_at", "-id")
    if cursor:
        anchor_id = _uuid(cursor, "job")
        anchor = visible.filter(pk=anchor_id).values("created_at", "id").first() if anchor_id else None
        if anchor is None:
            raise ToolError("invalid_params", "cursor: not a cursor this server returned; start without one")
        jobs = jobs.filter(created_at__lte=anchor["created_at"]).exclude(
            created_at=anchor["created_at"], id__gte=anchor["id"]
        )
    page = list(jobs[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, (str(page[-1].pk) if more else None)


def job_events_after(job_id: Id, after_seq: int) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job_id=job_id, seq__gt=after_seq).order_by("seq"))


def run_access(*, run_id: Id, principal: Principal, lock: bool = False) -> Run:
    """The run if `principal` owns it (or manages runs); ToolError("run_not_found") otherwise.
    `lock=True` takes its row lock (caller is in a transaction)."""
    pk = _uuid(run_id, "run")
    runs = Run.objects.select_for_update() if lock else Run.objects.all()
    run = runs.filter(pk=pk).first() if pk else None
    if run is None or (run.owner_principal_id != principal.id and not can_manage(principal)):
        raise ToolError("run_not_found", f"no run {run_id!s}: check the id returned by run.start")
    return run


def run_events(run_id: Id, *, after_seq: int, limit: int = RUN_EVENTS_PAGE) -> list[RunEvent]:
    """Events of a run after `after_seq`, in order. A cursor at or beyond the end gives an empty list."""
    if after_seq < 0:
        raise ToolError("invalid_params", "after_seq: give 0 (from the start) or the last seq you received")
    return list(RunEvent.objects.filter(run_id=run_id, seq__gt=after_seq).order_by("seq")[:limit])


def staff_principal(user: Any) -> Principal:
    """The principal a staff member acts as in the admin and the staff REST API (already checked: is_staff)."""
    return Principal(
        id=f"user:{user.pk}",
        kind="user",
        name=user.get_username(),
        identity_source="session",
        roles=frozenset({"staff"}),
        grants=frozenset({MANAGE_PERMISSION}),
        user_id=user.pk,
    )
