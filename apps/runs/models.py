"""Durable work: jobs (one asynchronous tool execution each), runs (a client's long-lived unit of work) and
their ordered event logs, plus dead letters.

State changes go through `services.job_transition` / the run services only; the models hold no logic.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

# A job or run id as callers hold it (a UUID, or its text form).
Id = uuid.UUID | str


class JobState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    DEAD_LETTERED = "dead_lettered"


TERMINAL_JOB_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT, JobState.DEAD_LETTERED}
)
ACTIVE_JOB_STATES = frozenset({JobState.QUEUED, JobState.RUNNING, JobState.RETRYING})

# The whole state machine. Anything else is refused by services.job_transition.
JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.TIMED_OUT,
            JobState.RETRYING,
            JobState.DEAD_LETTERED,
        }
    ),
    JobState.RETRYING: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.TIMED_OUT: frozenset(),
    JobState.DEAD_LETTERED: frozenset(),
}


class RunState(models.TextChoices):
    ACTIVE = "active"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    COMPLETED = "completed"


class Run(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    metadata = models.JSONField(default=dict, blank=True)
    owner_principal_id = models.CharField(max_length=300, db_index=True)
    owner = models.JSONField(help_text="Principal.to_dict() of the caller who started the run")
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.ACTIVE)
    lease_seconds = models.PositiveIntegerField()
    lease_expires_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    # Counter for the gap-free event sequence: incremented with UPDATE … RETURNING inside the event's transaction.
    last_seq = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["lease_expires_at"], condition=Q(state="active"), name="runs_run_active_lease_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class RunEvent(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=40)
    job = models.ForeignKey("Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="runs_runevent_run_seq_uniq")]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.kind}"


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tool = models.CharField(max_length=128, db_index=True)
    queue = models.CharField(max_length=40)
    arguments = models.JSONField(default=dict, blank=True)
    arguments_digest = models.CharField(max_length=64, help_text="sha256 of tool + canonical JSON arguments")
    principal_id = models.CharField(max_length=300, db_index=True)
    principal = models.JSONField(help_text="Principal.to_dict() snapshot of the caller")
    request_id = models.CharField(max_length=200, blank=True, default="")
    # NULL, not "": the partial unique constraint below only covers calls that gave a key.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED, db_index=True)
    attempts = models.PositiveIntegerField(default=0, help_text="executions started")
    max_retries = models.PositiveIntegerField(default=0)
    lost_count = models.PositiveIntegerField(default=0, help_text="times its worker died mid-job")
    rerun = models.CharField(
        max_length=8,
        choices=[("safe", "safe"), ("adopt", "adopt"), ("never", "never")],
        default="never",
        help_text="the tool's policy when its worker dies mid-job: run again, adopt the lost attempt, or fail",
    )
    lost_attempt = models.PositiveIntegerField(
        null=True, blank=True, help_text="the last attempt whose worker died mid-job (an adopting retry reads it)"
    )
    # The highest progress published for this job, across attempts: a retry's lower values are not published, so
    # progress notifications only ever increase (the MCP spec requires it).
    progress_high = models.FloatField(null=True, blank=True)
    timeout_s = models.FloatField(default=30.0)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True, help_text="{code, message, data, retryable}")
    ttl_ms = models.PositiveBigIntegerField(help_text="how long the result is kept for MCP task clients")
    trace_context = models.JSONField(default=dict, blank=True, help_text="W3C traceparent/tracestate")
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=500, blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(
        default=timezone.now, help_text="when its message was last (re)sent; the sweep resends stalled ones"
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker_id = models.CharField(max_length=200, blank=True, default="", help_text="host:pid:thread of the claim")
    last_event_seq = models.PositiveBigIntegerField(default=0)
    replay_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A retried request after a crash finds the first job instead of running the side effect twice.
            models.UniqueConstraint(
                fields=["principal_id", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="runs_job_principal_idempotency_uniq",
            ),
        ]
        indexes = [
            models.Index(fields=["heartbeat_at"], condition=Q(state="running"), name="runs_job_running_hb_idx"),
            models.Index(fields=["principal_id", "-created_at"], name="runs_job_principal_created_idx"),
            models.Index(
                fields=["last_sent_at"], condition=Q(state__in=["queued", "retrying"]), name="runs_job_waiting_sent_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool} {self.id} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_JOB_STATES


class JobEventKind(models.TextChoices):
    STATE = "state"
    PROGRESS = "progress"
    LOG = "log"
    HEARTBEAT = "heartbeat"
    RESULT = "result"
    ERROR = "error"
    CANCELLED = "cancelled"


TERMINAL_EVENT_KINDS = frozenset({JobEventKind.RESULT, JobEventKind.ERROR, JobEventKind.CANCELLED})


class JobEvent(models.Model):
    """One event of a job. `seq` is gap-free per job and is also the id of its Redis stream entry (`0-<seq>`)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=16, choices=JobEventKind.choices)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="runs_jobevent_job_seq_uniq")]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.seq} {self.kind}"

    @property
    def event_id(self) -> str:
        """The resumable cursor: pass it back as `after=` to `streams.job_events`."""
        return str(self.seq)

    @property
    def is_terminal(self) -> bool:
        return self.kind in TERMINAL_EVENT_KINDS

    @property
    def data(self) -> dict[str, Any]:
        """Alias of `payload` (what the gateway reads): progress → {progress, total?, message?};
        result → {state, result}; error → {state, code, message, data}; cancelled → {state, code, message, reason}."""
        return self.payload


class DeadLetter(models.Model):
    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="dead_letter")
    error = models.JSONField(default=dict)
    attempts = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replayed_job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"dead letter of {self.job_id}"
