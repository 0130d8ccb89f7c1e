"""Runs, jobs (with their events), and dead letters (with replay) in the admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.gateway.registry import ToolError
from apps.runs import selectors, services
from apps.runs.models import ACTIVE_JOB_STATES, DeadLetter, Job, JobEvent, Run, RunEvent


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class JobEventInline(_ReadOnlyInline):
    model = JobEvent
    fields = ("seq", "kind", "payload", "created_at")
    readonly_fields = fields
    ordering = ("seq",)


class RunEventInline(_ReadOnlyInline):
    model = RunEvent
    fk_name = "run"
    fields = ("seq", "kind", "job", "payload", "created_at")
    readonly_fields = fields
    ordering = ("seq",)


class RunJobInline(_ReadOnlyInline):
    model = Job
    fields = ("id", "tool", "state", "attempts", "created_at", "finished_at")
    readonly_fields = fields
    show_change_link = True


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "tool", "state", "principal_id", "attempts", "max_retries", "queue", "created_at", "run")
    list_filter = ("state", "queue", "tool")
    search_fields = ("=id", "tool", "principal_id", "idempotency_key", "request_id")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Job._meta.fields]
    inlines = [JobEventInline]
    actions = ["cancel_jobs"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Cancel selected jobs (running ones stop within about a second)")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        principal = selectors.staff_principal(request.user)
        done = 0
        for active in queryset.filter(state__in=ACTIVE_JOB_STATES):
            job = services.job_cancel(
                job_id=active.pk, principal=principal, reason=f"cancelled in the admin by {principal.name}"
            )
            done += not job.cancel_was_noop  # type: ignore[attr-defined]
        skipped = queryset.count() - done
        self.message_user(request, f"{done} job(s) cancelled; {skipped} already finished (left unchanged).")


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "state", "owner_principal_id", "lease_expires_at", "last_seq", "created_at")
    list_filter = ("state",)
    search_fields = ("=id", "name", "owner_principal_id")
    readonly_fields = [f.name for f in Run._meta.fields]
    inlines = [RunJobInline, RunEventInline]
    actions = ["cancel_runs"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Cancel selected runs and their unfinished jobs")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        principal = selectors.staff_principal(request.user)
        jobs = 0
        for run in queryset:
            _, cancelled = services.run_cancel(run_id=str(run.pk), principal=principal, reason="cancelled in the admin")
            jobs += len(cancelled)
        self.message_user(request, f"{queryset.count()} run(s) processed, {jobs} job(s) cancelled.")


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("job", "job_tool", "attempts", "error_code", "created_at", "replayed_at", "replayed_job")
    list_filter = ("replayed_at",)
    search_fields = ("=job__id", "job__tool")
    readonly_fields = ("job", "error", "attempts", "created_at", "replayed_at", "replayed_job")
    actions = ["replay"]
    list_select_related = ("job",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="tool")
    def job_tool(self, letter: DeadLetter) -> str:
        return letter.job.tool

    @admin.display(description="error")
    def error_code(self, letter: DeadLetter) -> str:
        return str(letter.error.get("code", ""))

    @admin.action(description="Replay selected dead letters as new jobs")
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        principal = selectors.staff_principal(request.user)
        for letter in queryset:
            try:
                job = services.dead_letter_replay(dead_letter_id=letter.pk, principal=principal)
            except ToolError as exc:
                self.message_user(request, exc.message, level=messages.WARNING)
            else:
                self.message_user(request, f"dead letter of {letter.job_id} replayed as job {job.pk}")
