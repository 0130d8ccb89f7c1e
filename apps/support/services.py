"""Writes of the support pages: cancelling runs and jobs (through apps.runs) and auditing what support staff see."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from apps.audit.writer import AuditRecord, audit_record_sync
from apps.runs import services as runs_services
from apps.runs.models import Job, Run
from apps.support.access import SupportAccess, acting_principal


def _client_host(request: HttpRequest | None) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


def support_action_record(
    *,
    access: SupportAccess,
    action: str,
    detail: dict[str, Any],
    request: HttpRequest | None = None,
    outcome: str = "ok",
    error_code: str | None = None,
    run_id: str | None = None,
    job_id: str | None = None,
) -> None:
    """Append `support.<action>` to the audit trail, naming the support user (durable before returning)."""
    audit_record_sync(
        AuditRecord(
            principal_id=access.principal_id,
            identity_source="session",
            method=f"support.{action}",
            outcome=outcome,
            error_code=error_code,
            detail=detail,
            client_host=_client_host(request),
            run_id=run_id,
            job_id=job_id,
        )
    )


def support_job_cancel(*, access: SupportAccess, job: Job, reason: str, request: HttpRequest | None = None) -> Job:
    """Cancel a job as the staff member (a finished job is left as it is: `job.cancel_was_noop`)."""
    cancelled = runs_services.job_cancel(
        job_id=job.pk,
        principal=acting_principal(access),
        reason=reason or f"cancelled from the support pages by {access.principal_id}",
    )
    support_action_record(
        access=access,
        action="job_cancel",
        detail={
            "job": str(job.pk),
            "state": cancelled.state,
            "noop": bool(getattr(cancelled, "cancel_was_noop", False)),
        },
        request=request,
        job_id=str(job.pk),
        run_id=str(job.run_id) if job.run_id else None,
    )
    return cancelled


def support_run_cancel(
    *, access: SupportAccess, run: Run, reason: str, request: HttpRequest | None = None
) -> tuple[Run, list[Job]]:
    """Cancel a run and its in-flight jobs as the staff member (an ended run is a no-op)."""
    run, jobs = runs_services.run_cancel(
        run_id=str(run.pk),
        principal=acting_principal(access),
        reason=reason or f"cancelled from the support pages by {access.principal_id}",
    )
    support_action_record(
        access=access,
        action="run_cancel",
        detail={"run": str(run.pk), "state": run.state, "cancelled_jobs": [str(j.pk) for j in jobs]},
        request=request,
        run_id=str(run.pk),
    )
    return run, jobs
