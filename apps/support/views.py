"""Support pages: the audit log (list, detail, export, chain state) and runs/jobs timelines.

Server-rendered in the admin's look; the only JavaScript is static/support/live.js (live updates over a
WebSocket). Every page is behind `support_read_required`; changes (cancel) also need `access.can_change`.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Generator
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.contrib import admin, messages
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_otp import devices_for_user
from django_otp.forms import OTPAuthenticationForm

from apps.audit.chain import COLUMNS
from apps.audit.models import AuditEvent
from apps.audit.redaction import redact
from apps.gateway.registry import ToolError
from apps.runs.models import ACTIVE_JOB_STATES, JobState, RunState
from apps.support import selectors
from apps.support.access import SupportAccess, asupport_read_required, support_read_required
from apps.support.filters import (
    BIGINT_MAX,
    SORTS,
    AuditFilters,
    CursorError,
    cursor_decode,
    form_problems,
    parse_filters,
)
from apps.support.services import support_action_record, support_job_cancel, support_run_cancel

# Every stored column, in chain order: an export carries what is needed to re-check the hashes.
EXPORT_COLUMNS = (*COLUMNS, "hash")


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    context = admin.site.each_context(request)
    context["support"] = getattr(request, "support", None)
    name = (request.resolver_match.url_name if request.resolver_match else "") or ""
    context["section"] = "chain" if name == "audit_chain" else "audit" if name.startswith("audit") else "runs"
    context.update(extra)
    return context


def _problem(request: HttpRequest, title: str, message: str, *, status: int, back: str | None = None) -> HttpResponse:
    return render(
        request,
        "support/problem.html",
        _context(request, title=title, message=message, back=back or reverse("support:audit")),
        status=status,
    )


def _support(request: HttpRequest) -> SupportAccess:
    return request.support  # type: ignore[attr-defined,no-any-return]


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        return None


# --------------------------------------------------------------------------------------------- sign in


class SupportLoginForm(OTPAuthenticationForm):
    """django-otp's form; a user with exactly one device need not pick it (with several, the form asks)."""

    def _chosen_device(self, user: Any) -> Any:
        device = super()._chosen_device(user)
        if device is None:
            devices = list(devices_for_user(user, confirmed=True))
            if len(devices) == 1:
                device = devices[0]
        return device


class SupportLoginView(auth_views.LoginView):
    """Password and one-time code on one form (django-otp's OTPAuthenticationForm), like the admin's."""

    authentication_form = SupportLoginForm
    template_name = "support/login.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(admin.site.each_context(self.request))
        context["title"] = "Sign in to the support pages"
        return context

    def get_default_redirect_url(self) -> str:
        return reverse("support:audit")


class SupportLogoutView(auth_views.LogoutView):
    next_page = "support:login"


# ------------------------------------------------------------------------------------------- audit log


@require_GET
@support_read_required
def audit_list(request: HttpRequest) -> HttpResponse:
    form, filters = parse_filters(request.GET)
    page = None
    status = 200
    cursor_problem = None
    if filters is not None:
        limit = form.cleaned_data["limit"]
        try:
            after = cursor_decode(filters.sort, request.GET["after"]) if request.GET.get("after") else None
            before = cursor_decode(filters.sort, request.GET["before"]) if request.GET.get("before") else None
        except CursorError as exc:
            cursor_problem = f"This page link cannot be used ({exc}). Showing the first page instead."
            after = before = None
            status = 400
        page = selectors.audit_page(filters, after=after, before=before, limit=limit)
    else:
        status = 400
    query = filters.as_query() if filters else {}
    if filters and form.cleaned_data.get("limit") != 50:
        query["limit"] = str(form.cleaned_data["limit"])
    first_page = page is not None and page.prev_cursor is None
    return render(
        request,
        "support/audit_list.html",
        _context(
            request,
            title="Audit log",
            form=form,
            filters=filters,
            page=page,
            query=urlencode(query),
            cursor_problem=cursor_problem,
            sorts=SORTS,
            chain=selectors.audit_chain_banner(),
            live=bool(first_page and filters and filters.sort == "newest"),
            live_after=(page.events[0].sequence if page and page.events else selectors.audit_head_sequence()),
        ),
        status=status,
    )


def _pairs(text: str) -> dict[str, Any]:
    """A JSON object as (key, JSON value) rows for a table; anything else as text."""
    value = selectors.json_or_text(text)
    if isinstance(value, dict) and value:
        return {"pairs": [(k, json.dumps(v, ensure_ascii=False)) for k, v in value.items()], "text": None}
    if value is None:
        return {"pairs": [], "text": None}
    return {"pairs": [], "text": value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)}


@require_GET
@support_read_required
def audit_detail(request: HttpRequest, sequence: int) -> HttpResponse:
    access = _support(request)
    event = None if sequence > BIGINT_MAX else selectors.audit_event_get(sequence)
    support_action_record(
        access=access,
        action="audit_event_view",
        detail={"sequence": sequence, "found": event is not None},
        request=request,
        outcome="ok" if event is not None else "invalid",
        error_code=None if event is not None else "not_found",
    )
    if event is None:
        return _problem(
            request,
            "No such audit event",
            f"There is no audit event #{sequence}. Check the number, or search the audit log.",
            status=404,
        )
    run_id = _uuid_or_none(event.run_id)
    job_id = _uuid_or_none(event.job_id)
    return render(
        request,
        "support/audit_detail.html",
        _context(
            request,
            title=f"Audit event #{event.sequence}",
            event=event,
            arguments=_pairs(event.arguments),
            detail=_pairs(event.detail),
            run=selectors.run_get(run_id) if run_id else None,
            job=selectors.job_get(job_id) if job_id else None,
            previous_sequence=event.sequence - 1 if event.sequence > 1 else None,
            next_sequence=event.sequence + 1,
        ),
    )


@require_GET
@support_read_required
def audit_chain(request: HttpRequest) -> HttpResponse:
    full = request.GET.get("full") == "1"
    state = selectors.audit_chain_state(full=full)
    return render(
        request,
        "support/audit_chain.html",
        _context(request, title="Audit chain verification", state=state, full=full),
        status=200,
    )


def _csv_safe(value: Any) -> Any:
    """Spreadsheets run cells that start with = + - @ as formulas: prefix those with a quote."""
    if isinstance(value, str) and value[:1] in {"=", "+", "-", "@", "\t", "\r"}:
        return "'" + value
    return value


def _csv_lines(chunk: list[AuditEvent], header: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(EXPORT_COLUMNS)
    for event in chunk:
        row = selectors.audit_event_row(event)
        row["arguments"], row["detail"] = event.arguments, event.detail
        writer.writerow([_csv_safe(row[c]) if row[c] is not None else "" for c in EXPORT_COLUMNS])
    return out.getvalue()


def _jsonl_lines(chunk: list[AuditEvent]) -> str:
    return "".join(json.dumps(selectors.audit_event_row(e), ensure_ascii=False) + "\n" for e in chunk)


async def _export_body(filters: AuditFilters, fmt: str) -> AsyncIterator[str]:
    chunks: Generator[list[AuditEvent]] = selectors.audit_export_chunks(filters)
    header = True
    try:
        while True:
            chunk = await sync_to_async(lambda: next(chunks, None))()
            if chunk is None:
                return
            yield _csv_lines(chunk, header) if fmt == "csv" else _jsonl_lines(chunk)
            header = False
    finally:
        await sync_to_async(chunks.close)()


@asupport_read_required
async def audit_export(request: HttpRequest, fmt: str) -> HttpResponseBase:
    if request.method != "GET":
        return HttpResponse("Use GET.", status=405, content_type="text/plain")
    form, filters = parse_filters(request.GET)
    if filters is None:
        return HttpResponse(
            f"Cannot export: {form_problems(form)}. Fix the filter and try again.\n",
            status=400,
            content_type="text/plain",
        )
    await sync_to_async(support_action_record)(
        access=_support(request),
        action="audit_export",
        detail={"format": fmt, "filters": filters.as_query()},
        request=request,
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    extension = "csv" if fmt == "csv" else "jsonl"
    return StreamingHttpResponse(
        _export_body(filters, fmt),
        content_type=content_type,
        headers={
            "Content-Disposition": f'attachment; filename="audit-{stamp}.{extension}"',
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        },
    )


# --------------------------------------------------------------------------------------- runs and jobs


@require_GET
@support_read_required
def run_list(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "")
    job_state = request.GET.get("job_state", "")
    problems = []
    if state and state not in RunState.values:
        problems.append(f"run state {state!r} does not exist: use one of {', '.join(RunState.values)}")
        state = ""
    if job_state and job_state not in JobState.values:
        problems.append(f"job state {job_state!r} does not exist: use one of {', '.join(JobState.values)}")
        job_state = ""
    owner = request.GET.get("owner", "").strip()[:300]
    tool = request.GET.get("tool", "").strip()[:128]
    before = _uuid_or_none(request.GET.get("before", ""))
    runs = selectors.run_list(state=state, owner=owner, before=str(before) if before else None)
    jobs = selectors.job_list(state=job_state, tool=tool)
    return render(
        request,
        "support/run_list.html",
        _context(
            request,
            title="Runs and jobs",
            runs=runs,
            jobs=jobs,
            problems=problems,
            run_states=RunState.values,
            job_states=JobState.values,
            params={"state": state, "owner": owner, "job_state": job_state, "tool": tool},
        ),
        status=400 if problems else 200,
    )


def _unknown(request: HttpRequest, what: str, value: str) -> HttpResponse:
    return _problem(
        request,
        f"No such {what}",
        f"There is no {what} {value}. Check the id (it is a UUID like 0b6f…-…), or pick one from the list.",
        status=404,
        back=reverse("support:runs"),
    )


@require_GET
@support_read_required
def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    pk = _uuid_or_none(run_id)
    run = selectors.run_get(pk) if pk else None
    if run is None:
        return _unknown(request, "run", run_id)
    events = selectors.run_timeline(run)
    return render(
        request,
        "support/run_detail.html",
        _context(
            request,
            title=f"Run {run.name}",
            run=run,
            jobs=selectors.run_jobs(run),
            events=events,
            last_seq=events[-1].seq if events else 0,
            active=run.state == RunState.ACTIVE,
            active_job_states=list(ACTIVE_JOB_STATES),
        ),
    )


@require_GET
@support_read_required
def job_detail(request: HttpRequest, job_id: str) -> HttpResponse:
    pk = _uuid_or_none(job_id)
    job = selectors.job_get(pk) if pk else None
    if job is None:
        return _unknown(request, "job", job_id)
    events = selectors.job_timeline(job)
    return render(
        request,
        "support/job_detail.html",
        _context(
            request,
            title=f"Job {job.tool}",
            job=job,
            events=events,
            last_seq=events[-1].seq if events else 0,
            active=job.state in ACTIVE_JOB_STATES,
            result=json.dumps(job.result, indent=2, ensure_ascii=False) if job.result is not None else None,
            error=job.error,
            arguments=sorted((k, json.dumps(v, ensure_ascii=False)) for k, v in redact(job.arguments or {}).items()),
        ),
    )


def _refuse_change(request: HttpRequest, access: SupportAccess, what: str, back: str) -> HttpResponse:
    support_action_record(
        access=access,
        action=f"{what}_cancel",
        detail={"refused": "read-only role"},
        request=request,
        outcome="denied",
        error_code="forbidden",
    )
    return _problem(
        request,
        "Not allowed",
        f"Your role lets you read these pages but not change anything: cancelling a {what} needs a staff account. "
        "Ask a platform administrator.",
        status=403,
        back=back,
    )


@require_POST
@support_read_required
def run_cancel(request: HttpRequest, run_id: str) -> HttpResponse:
    access = _support(request)
    pk = _uuid_or_none(run_id)
    run = selectors.run_get(pk) if pk else None
    if run is None:
        return _unknown(request, "run", run_id)
    back = reverse("support:run", args=[run.pk])
    if not access.can_change:
        return _refuse_change(request, access, "run", back)
    try:
        run, jobs = support_run_cancel(
            access=access, run=run, reason=request.POST.get("reason", "")[:400], request=request
        )
    except ToolError as exc:
        messages.error(request, f"The run was not cancelled: {exc}")
        return redirect(back)
    if run.state == RunState.CANCELLED and jobs is not None:
        messages.success(request, f"Run cancelled; {len(jobs)} in-flight job(s) cancelled with it.")
    else:
        messages.info(request, f"The run had already ended ({run.state}); nothing changed.")
    return redirect(back)


@require_POST
@support_read_required
def job_cancel(request: HttpRequest, job_id: str) -> HttpResponse:
    access = _support(request)
    pk = _uuid_or_none(job_id)
    job = selectors.job_get(pk) if pk else None
    if job is None:
        return _unknown(request, "job", job_id)
    back = request.POST.get("back") or reverse("support:job", args=[job.pk])
    if not back.startswith("/support/"):
        back = reverse("support:job", args=[job.pk])
    if not access.can_change:
        return _refuse_change(request, access, "job", back)
    try:
        job = support_job_cancel(access=access, job=job, reason=request.POST.get("reason", "")[:400], request=request)
    except ToolError as exc:
        messages.error(request, f"The job was not cancelled: {exc}")
        return redirect(back)
    if getattr(job, "cancel_was_noop", False):
        messages.info(request, f"The job had already finished ({job.state}); nothing changed.")
    else:
        messages.success(request, "Job cancelled; its worker stops at its next cancellation check.")
    return redirect(back)


def index(request: HttpRequest) -> HttpResponse:
    return redirect("support:audit")
