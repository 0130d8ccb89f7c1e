"""Writes for jobs and runs. Every state change of a job goes through `job_transition`, except the two hot ones of
every queued call — claim (queued/retrying → running) and result (running → succeeded for the claim holder) — which
first try `events.job_fast_transition`: one conditional UPDATE … RETURNING that writes the same rows and events, and
falls back to `job_transition` whenever its WHERE does not match.

Exactly-once completion: a worker claims a job (queued/retrying → running) under the row lock and gets a claim
token (`worker_id`); only the holder of the current claim can complete the job, and a terminal state never
changes again. Redelivered or duplicate messages, a worker that was presumed dead, or a cancel racing a result
all end in a no-op rather than a second completion.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import dramatiq.errors
import redis
from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.principal import Principal
from apps.audit.writer import AuditRecord, audit_outbox_drain, audit_record_on_commit, audit_record_outbox
from apps.gateway.registry import Tool, ToolError
from apps.runs import events
from apps.runs.models import (
    ACTIVE_JOB_STATES,
    JOB_TRANSITIONS,
    TERMINAL_JOB_STATES,
    DeadLetter,
    Id,
    Job,
    JobEventKind,
    JobState,
    Run,
    RunState,
)
from apps.runs.selectors import can_manage, run_access

log = logging.getLogger(__name__)

RUN_NAME_MAX = 200
LEASE_MIN_S = 5
LEASE_MAX_S = 7 * 86400


class JobStateError(ToolError):
    """A transition the state machine forbids (or a claim that is no longer current)."""

    def __init__(self, job: Job, to: str, why: str = ""):
        super().__init__(
            "job_state_conflict",
            f"job {job.pk} is {job.state}: cannot become {to}{f' ({why})' if why else ''}",
            data={"job_id": str(job.pk), "state": job.state, "requested": to},
        )
        self.state = job.state


def _audit(
    action: str,
    *,
    principal: Principal | None,
    job_id: Id | None = None,
    run_id: Id | None = None,
    detail: dict[str, Any],
) -> None:
    """Record a people- or scheduler-driven change once it is committed (the gateway audits the tool call itself)."""
    actor = (
        {
            "principal_id": principal.id,
            "identity_source": principal.identity_source,
            "credential_id": principal.credential_id,
        }
        if principal is not None
        else {"principal_id": "internal:scheduler", "identity_source": "internal"}
    )
    record = AuditRecord(
        method=f"runs.{action}",
        outcome="ok",
        job_id=str(job_id) if job_id else None,
        run_id=str(run_id) if run_id else None,
        detail=detail,
        **actor,
    )
    audit_record_on_commit(record)


# ------------------------------------------------------------------------------ audit of queued calls
#
# A queued call is audited by the job's own writes, not only by the gateway that answered it (which may die before the
# result): `tools/call` with outcome "accepted" in the transaction that stores the job, and `job.finished` (outcome ok
# or error, the job's final state and error code) in the transaction that records the terminal state, whoever records
# it (the worker, the runs sweep, a cancel). Both carry the job id and the call's request id. They go through the
# audit outbox (one INSERT, no chain lock inside the job's transaction; ADR 0005) and enter the chain in batches.


def _call_record(job: Job, **values: Any) -> AuditRecord:
    principal = job.principal or {}
    return AuditRecord(
        principal_id=principal.get("id") or job.principal_id,
        identity_source=principal.get("identity_source"),
        credential_id=principal.get("credential_id"),
        tool=job.tool,
        request_id=job.request_id or None,
        trace_id=(job.trace_context or {}).get("traceparent"),
        run_id=str(job.run_id) if job.run_id else None,
        job_id=str(job.pk),
        **values,
    )


def _audit_accepted(job: Job, context: dict[str, Any] | None) -> None:
    """The call's first audit row, in the job's own transaction: it exists exactly when the job does."""
    context = context or {}
    record = _call_record(
        job,
        method="tools/call",
        arguments=job.arguments,
        outcome="accepted",
        session_id=context.get("session_id"),
        client_host=context.get("client_host"),
        protocol_version=context.get("protocol_version"),
        detail={"queue": job.queue, "rerun": job.rerun},
    )
    audit_record_outbox(record)


def _audit_finished(job: Job) -> None:
    """The call's final audit row, in the transaction that records the job's terminal state (caller holds the row)."""
    succeeded = job.state == JobState.SUCCEEDED
    code = None if succeeded else "cancelled" if job.state == JobState.CANCELLED else (job.error or {}).get("code")
    duration = (job.finished_at - job.created_at).total_seconds() * 1000 if job.finished_at else None
    record = _call_record(
        job,
        method="job.finished",
        outcome="ok" if succeeded else "error",
        error_code=code or None,
        detail={
            "state": job.state,
            "attempts": job.attempts,
            "lost_count": job.lost_count,
            "duration_ms": round(duration, 3) if duration is not None else None,
        },
    )
    audit_record_outbox(record)


def arguments_digest(tool_name: str, arguments: dict[str, Any]) -> str:
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{tool_name}\n{canonical}".encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ jobs


def job_submit(
    *,
    tool: Tool,
    arguments: dict[str, Any],
    principal: Principal,
    request_id: str | None = None,
    idempotency_key: str | None = None,
    run_id: str | None = None,
    task_ttl_ms: int | None = None,
    trace_context: dict[str, str] | None = None,
    audit_context: dict[str, Any] | None = None,
) -> Job:
    """Create a queued job and enqueue it after commit; its `tools/call` audit row (outcome "accepted") is written in
    the same transaction. `audit_context`: what the gateway knows of the request (session_id, client_host,
    protocol_version) for that row.

    Same principal + idempotency key with the same tool and arguments returns the first job (whatever its
    state); with different ones raises ToolError("idempotency_conflict"). The unique constraint makes this hold
    across gateway replicas and crashes.
    """
    if tool.execution != "queued" or not tool.queue:
        raise ToolError("internal_error", f"tool {tool.name!r} is not a queued tool; call it inline")
    if tool.queue not in settings.DRAMATIQ_QUEUES:
        raise ToolError("internal_error", f"tool {tool.name!r} names unknown queue {tool.queue!r}")
    if task_ttl_ms is not None and task_ttl_ms <= 0:
        raise ToolError("invalid_params", "task ttl must be a positive number of milliseconds")
    digest = arguments_digest(tool.name, arguments)
    if idempotency_key is not None:
        existing = Job.objects.filter(principal_id=principal.id, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _idempotent_replay(existing, digest, idempotency_key)
    try:
        # In a caller's transaction this is a savepoint, so a lost idempotency race leaves that transaction usable.
        with transaction.atomic():
            run = run_access(run_id=run_id, principal=principal, lock=False) if run_id else None
            if run is not None and (run.state != RunState.ACTIVE or run.lease_expires_at <= timezone.now()):
                raise ToolError(
                    "run_not_active",
                    f"run {run.pk} is {run_state_now(run)}: start a new run (run.start) to attach tool calls",
                    data={"run_id": str(run.pk), "state": run_state_now(run)},
                )
            job = Job(
                tool=tool.name,
                queue=tool.queue,
                arguments=arguments,
                arguments_digest=digest,
                principal_id=principal.id,
                principal=principal.to_dict(),
                request_id=request_id or "",
                idempotency_key=idempotency_key,
                run=run,
                max_retries=tool.max_retries,
                rerun=tool.rerun,
                timeout_s=tool.timeout_s,
                ttl_ms=task_ttl_ms or settings.RUNS_TASK_TTL_MS,
                trace_context=dict(trace_context or {}),
            )
            job.full_clean(validate_unique=False, validate_constraints=False)  # the database enforces those
            job.save(force_insert=True)
            if run is not None:
                events.run_event_append(
                    run_id=run.pk,
                    kind="job.submitted",
                    payload={"job_id": str(job.pk), "tool": tool.name},
                    job_id=job.pk,
                )
            _audit_accepted(job, audit_context)
            transaction.on_commit(partial(_enqueue, job.pk, job.queue, job.timeout_s))
    except IntegrityError:
        # Lost the race for the idempotency key to a concurrent request: that request's job is the answer.
        existing = Job.objects.filter(principal_id=principal.id, idempotency_key=idempotency_key).first()
        if existing is None or idempotency_key is None:
            raise
        return _idempotent_replay(existing, digest, idempotency_key)
    return job


def _idempotent_replay(job: Job, digest: str, key: str) -> Job:
    if job.arguments_digest != digest:
        raise ToolError(
            "idempotency_conflict",
            f"idempotency key {key!r} was already used for a different call ({job.tool}, other arguments): "
            "use a new key for a new call",
            data={"job_id": str(job.pk)},
        )
    return job


def _enqueue(job_id: Id, queue: str, timeout_s: float, delay_ms: int | None = None) -> None:
    """Send the job's message (after commit). A broker failure is logged, not raised: the job is committed and the
    sweep resends messages of jobs left waiting (job_resend_stalled), so the caller still gets its job. A message
    known not to have been sent is marked due for resending at once, so the first sweep after the broker is back
    sends it (not RUNS_RESEND_AFTER_S later)."""
    from apps.runs.actors import job_execute_actor

    options: dict[str, Any] = {"time_limit": int(timeout_s * 1000) + 1000}
    if delay_ms:
        options["delay"] = delay_ms
    try:
        job_execute_actor(queue).send_with_options(args=(str(job_id),), **options)
    except (redis.RedisError, OSError, dramatiq.errors.ConnectionError) as exc:
        log.warning("job %s: message not sent (%s); the next runs sweep will resend it", job_id, exc)
        overdue = timezone.now() - timedelta(seconds=settings.RUNS_RESEND_AFTER_S + 1)
        try:
            Job.objects.filter(pk=job_id, state=JobState.QUEUED).update(last_sent_at=overdue)
        except DatabaseError as db_exc:  # the sweep still resends it, RUNS_RESEND_AFTER_S later
            log.warning("job %s: could not mark its message for resending (%s)", job_id, db_exc)


def job_resend_stalled(*, limit: int = 500) -> list[str]:
    """Resend messages of jobs still waiting RUNS_RESEND_AFTER_S after they were (last) sent or due: a message
    lost with Redis, or never sent because the broker was down. Duplicates are harmless (the claim drops them)."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.RUNS_RESEND_AFTER_S)
    stalled = list(
        Job.objects.filter(
            Q(state=JobState.QUEUED) | Q(state=JobState.RETRYING, next_attempt_at__lt=cutoff),
            last_sent_at__lt=cutoff,
        )
        .order_by("last_sent_at")
        .values_list("pk", "queue", "timeout_s")[:limit]
    )
    if not stalled:
        return []
    Job.objects.filter(pk__in=[pk for pk, _, _ in stalled]).update(last_sent_at=now)
    for pk, queue, timeout_s in stalled:
        _enqueue(pk, queue, timeout_s)
    log.warning("resent the messages of %s waiting job(s)", len(stalled))
    return [str(pk) for pk, _, _ in stalled]


@transaction.atomic
def job_transition(
    *,
    job_id: Id,
    to: str,
    claim: str | None = None,
    event_kind: str | None = None,
    event_payload: dict[str, Any] | None = None,
    **changes: Any,
) -> Job:
    """Move a job to `to` under its row lock, or raise JobStateError (the checked path for every transition).

    `claim`: when given, the job must still be held by that claim token (a worker's execution).
    Writes the matching job event (terminal kinds for terminal states, `state` otherwise) in the same transaction.
    """
    job = Job.objects.select_for_update().get(pk=job_id)
    return _transition_locked(job, to=to, claim=claim, event_kind=event_kind, event_payload=event_payload, **changes)


def _transition_locked(
    job: Job,
    *,
    to: str,
    claim: str | None = None,
    event_kind: str | None = None,
    event_payload: dict[str, Any] | None = None,
    **changes: Any,
) -> Job:
    """job_transition for a row the caller already holds locked (saves a second SELECT … FOR UPDATE)."""
    if to not in JOB_TRANSITIONS[job.state]:
        raise JobStateError(job, to)
    if claim is not None and job.worker_id != claim:
        raise JobStateError(job, to, "the claim was taken over")
    now = timezone.now()
    job.state = to
    fields = {"state", "updated_at", "last_event_seq"}
    for name, value in changes.items():
        setattr(job, name, value)
        fields.add(name)
    if to == JobState.RUNNING:
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        fields |= {"started_at", "heartbeat_at"}
    if to in TERMINAL_JOB_STATES:
        job.finished_at = now
        fields.add("finished_at")
    kind = event_kind or _default_event_kind(to)
    events.job_event_append(job=job, kind=kind, payload={"state": to, **(event_payload or {})})
    job.save(update_fields=sorted(fields))
    if to in TERMINAL_JOB_STATES:
        _audit_finished(job)
    return job


def _default_event_kind(state: str) -> str:
    if state == JobState.SUCCEEDED:
        return JobEventKind.RESULT
    if state == JobState.CANCELLED:
        return JobEventKind.CANCELLED
    if state in TERMINAL_JOB_STATES:
        return JobEventKind.ERROR
    return JobEventKind.STATE


def job_claim(*, job_id: str, worker_id: str) -> Job | None:
    """Start an execution: queued/retrying → running, attempts + 1. None when there is nothing to run
    (unknown job, already running elsewhere with a live heartbeat, finished, cancelled)."""
    claimed = events.job_fast_transition(job_id=job_id, to=JobState.RUNNING, worker_id=worker_id)
    if claimed is not None:  # the usual case, in one round trip; everything else is decided under the row lock
        return claimed
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            log.warning("job %s: message for an unknown job ignored", job_id)
            return None
        if job.state == JobState.RUNNING and _heartbeat_stale(job):
            # A redelivered message of a worker that died: requeue it here rather than wait for the sweep.
            job = _recover_lost(job)
        if job.state not in (JobState.QUEUED, JobState.RETRYING):
            log.info("job %s is %s: duplicate message ignored", job_id, job.state)
            return None
        return _transition_locked(
            job,
            to=JobState.RUNNING,
            attempts=job.attempts + 1,
            worker_id=worker_id,
            next_attempt_at=None,
            event_payload={"attempt": job.attempts + 1},
        )


def job_heartbeat(*, job_id: str, claim: str) -> bool:
    """Renew a running job's heartbeat. False when the claim is gone (job ended, cancelled or taken over)."""
    return bool(
        Job.objects.filter(pk=job_id, state=JobState.RUNNING, worker_id=claim).update(heartbeat_at=timezone.now())
    )


def job_succeed(*, job_id: str, claim: str, result: dict[str, Any]) -> Job | None:
    """Record the result; None (and nothing written) when this execution no longer owns the job."""
    with transaction.atomic():
        done = events.job_fast_transition(job_id=job_id, to=JobState.SUCCEEDED, worker_id=claim, result=result)
        if done is not None:
            _audit_finished(done)
            return done
    try:
        return job_transition(
            job_id=job_id, to=JobState.SUCCEEDED, claim=claim, result=result, event_payload={"result": result}
        )
    except JobStateError as exc:
        log.info("job %s: result of a superseded execution discarded (%s)", job_id, exc.message)
        return None


def job_fail(*, job_id: str, claim: str, error: dict[str, Any], retryable: bool, timed_out: bool = False) -> Job | None:
    """Record a failed execution: retry with back-off, dead-letter when retries are spent, or fail at once."""
    try:
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            if job.state != JobState.RUNNING or job.worker_id != claim:
                raise JobStateError(job, "failed", "the claim was taken over")
            if timed_out:
                return _transition_locked(
                    job, to=JobState.TIMED_OUT, claim=claim, error=error, event_payload=_error_event(error)
                )
            if not retryable:
                return _transition_locked(
                    job, to=JobState.FAILED, claim=claim, error=error, event_payload=_error_event(error)
                )
            if job.attempts <= job.max_retries:
                return _schedule_retry(job, error=error, claim=claim)
            return _dead_letter(job, error=error, claim=claim)
    except JobStateError as exc:
        log.info("job %s: failure of a superseded execution discarded (%s)", job_id, exc.message)
        return None


def _error_event(error: dict[str, Any]) -> dict[str, Any]:
    """Terminal error event payload: `code`, `message`, `data` at the top, as a tool error result needs them."""
    return {
        "code": error.get("code", "internal_error"),
        "message": error.get("message", ""),
        "data": error.get("data", {}),
    }


def retry_delay_ms(attempt: int) -> int:
    """Exponential back-off with "equal jitter": half fixed, half random, so retries spread but never bunch at 0."""
    ceiling = min(settings.RUNS_RETRY_MAX_MS, settings.RUNS_RETRY_BASE_MS * 2 ** max(attempt - 1, 0))
    return int(ceiling / 2 + random.uniform(0, ceiling / 2))


def _schedule_retry(job: Job, *, error: dict[str, Any], claim: str | None) -> Job:
    delay_ms = retry_delay_ms(job.attempts)
    job = _transition_locked(
        job,
        to=JobState.RETRYING,
        claim=claim,
        error=error,
        last_sent_at=timezone.now(),
        next_attempt_at=timezone.now() + timedelta(milliseconds=delay_ms),
        event_payload={"error": error, "attempt": job.attempts, "retry_in_ms": delay_ms},
    )
    transaction.on_commit(partial(_enqueue, job.pk, job.queue, job.timeout_s, delay_ms))
    return job


def _dead_letter(job: Job, *, error: dict[str, Any], claim: str | None) -> Job:
    job = _transition_locked(
        job, to=JobState.DEAD_LETTERED, claim=claim, error=error, event_payload=_error_event(error)
    )
    DeadLetter.objects.create(job=job, error=error, attempts=job.attempts)
    log.warning("job %s (%s) dead-lettered after %s attempts: %s", job.pk, job.tool, job.attempts, error)
    return job


def _heartbeat_stale(job: Job, now: datetime | None = None) -> bool:
    beat = job.heartbeat_at or job.started_at
    return beat is None or beat < (now or timezone.now()) - timedelta(seconds=settings.RUNS_JOB_STALE_S)


def _recover_lost(job: Job) -> Job:
    """The worker running `job` died (caller holds the row lock). What happens next is the tool's `rerun` policy:
    "never" fails the job with `worker_lost` (its effect may have happened: running it again could repeat it);
    "safe" and "adopt" retry it ("adopt" with `ctx.lost_attempt` set), or dead-letter it when out of tries."""
    lost = job.lost_count + 1
    lost_during = f"the worker {job.worker_id or '?'} stopped heartbeating during attempt {job.attempts}"
    if job.rerun == "never":
        error = {
            "code": "worker_lost",
            "message": f"{lost_during}; {job.tool} is not safe to run twice, so it was not run again: check whether "
            "it took effect before calling it again",
            "data": {"attempt": job.attempts, "rerun": job.rerun},
            "retryable": False,
        }
        return _transition_locked(
            job,
            to=JobState.FAILED,
            error=error,
            worker_id="",
            lost_count=lost,
            lost_attempt=job.attempts,
            event_payload=_error_event(error),
        )
    error = {"code": "worker_lost", "message": lost_during, "data": {"attempt": job.attempts}, "retryable": True}
    if lost > settings.RUNS_LOST_WORKER_RETRIES and job.attempts > job.max_retries:
        job.lost_count, job.lost_attempt = lost, job.attempts
        Job.objects.filter(pk=job.pk).update(lost_count=lost, lost_attempt=job.attempts)
        return _dead_letter(job, error=error, claim=None)
    job = _transition_locked(
        job,
        to=JobState.RETRYING,
        error=error,
        next_attempt_at=timezone.now(),
        last_sent_at=timezone.now(),
        worker_id="",
        lost_count=lost,
        lost_attempt=job.attempts,
        event_payload={"error": error, "attempt": job.attempts, "retry_in_ms": 0},
    )
    transaction.on_commit(partial(_enqueue, job.pk, job.queue, job.timeout_s))
    return job


def job_recover_stale(*, limit: int = 100) -> list[str]:
    """Requeue running jobs whose worker stopped heartbeating (the scheduler's sweep). Returns their ids."""
    cutoff = timezone.now() - timedelta(seconds=settings.RUNS_JOB_STALE_S)
    recovered = []
    with transaction.atomic():
        stale = list(
            Job.objects.select_for_update(skip_locked=True)
            .filter(state=JobState.RUNNING, heartbeat_at__lt=cutoff)
            .order_by("heartbeat_at")[:limit]
        )
        for job in stale:
            _recover_lost(job)
            recovered.append(str(job.pk))
    if recovered:
        log.warning("requeued %s job(s) whose worker died: %s", len(recovered), ", ".join(recovered))
    return recovered


def job_cancel(*, job_id: Id, principal: Principal, reason: str = "") -> Job:
    """Cancel a job. A finished job is returned unchanged (a documented no-op, `job.cancel_was_noop` is True).

    A running job's worker sees the flag within RUNS_CANCEL_POLL_MS; its handler stops at its next
    `ctx.cancelled()` check (or is interrupted by the job's time limit), and nothing it returns is recorded.
    """
    from apps.runs.selectors import job_get

    job = job_get(job_id, principal)
    with transaction.atomic():
        job = _job_cancel(job=job, reason=reason or f"cancelled by {principal.id}")
        if not job.cancel_was_noop:  # type: ignore[attr-defined]
            _audit(
                "job_cancel",
                principal=principal,
                job_id=job.pk,
                run_id=job.run_id,
                detail={"reason": job.cancel_reason},
            )
    return job


def _job_cancel(*, job: Job, reason: str) -> Job:
    if job.state in TERMINAL_JOB_STATES:
        job.cancel_was_noop = True  # type: ignore[attr-defined]
        return job
    try:
        job = job_transition(
            job_id=job.pk,
            to=JobState.CANCELLED,
            cancel_requested_at=timezone.now(),
            cancel_reason=reason[:500],
            event_payload={"code": "cancelled", "message": reason, "data": {}, "reason": reason},
        )
    except JobStateError:  # finished meanwhile
        job = Job.objects.get(pk=job.pk)
        job.cancel_was_noop = True  # type: ignore[attr-defined]
        return job
    transaction.on_commit(partial(_raise_cancel_flag, job.pk))
    job.cancel_was_noop = False  # type: ignore[attr-defined]
    return job


def _raise_cancel_flag(job_id: Id) -> None:
    try:
        events.redis_client().set(events.cancel_key(job_id), "1", ex=86400)
    except redis.RedisError as exc:  # the worker's heartbeat still sees the cancelled state in Postgres
        log.warning("job %s: cancel flag not set in Redis (%s); the worker notices at its next heartbeat", job_id, exc)


@transaction.atomic
def dead_letter_replay(*, dead_letter_id: int, principal: Principal) -> Job:
    """Replay a dead-lettered job as a new job with the same tool and arguments (the original stays terminal)."""
    letter = DeadLetter.objects.select_for_update().select_related("job").filter(pk=dead_letter_id).first()
    if letter is None:
        raise ToolError("not_found", f"no dead letter {dead_letter_id}")
    if not can_manage(principal):
        raise ToolError("forbidden", "replaying a dead letter needs the runs.manage permission")
    if letter.replayed_at is not None:
        raise ToolError(
            "already_replayed",
            f"dead letter {letter.pk} was replayed at {letter.replayed_at.isoformat()} as job {letter.replayed_job_id}",
        )
    original = letter.job
    job = Job(
        tool=original.tool,
        queue=original.queue,
        arguments=original.arguments,
        arguments_digest=original.arguments_digest,
        principal_id=original.principal_id,
        principal=original.principal,
        request_id=original.request_id,
        run=original.run if original.run and original.run.state == RunState.ACTIVE else None,
        max_retries=original.max_retries,
        rerun=original.rerun,
        timeout_s=original.timeout_s,
        ttl_ms=original.ttl_ms,
        trace_context=original.trace_context,
        replay_of=original,
    )
    job.full_clean(validate_unique=False, validate_constraints=False)
    job.save(force_insert=True)
    letter.replayed_at = timezone.now()
    letter.replayed_job = job
    letter.save(update_fields=["replayed_at", "replayed_job"])
    _audit_accepted(job, None)  # the replayed call's own rows: accepted now, job.finished when it ends
    transaction.on_commit(partial(_enqueue, job.pk, job.queue, job.timeout_s))
    _audit("dead_letter_replay", principal=principal, job_id=job.pk, detail={"original_job": str(original.pk)})
    return job


# ------------------------------------------------------------------------------------------------ runs


def run_state_now(run: Run) -> str:
    if run.state == RunState.ACTIVE and run.lease_expires_at <= timezone.now():
        return RunState.EXPIRED
    return run.state


def run_start(*, principal: Principal, name: str, metadata: dict[str, Any] | None, lease_seconds: int) -> Run:
    if not isinstance(name, str) or not name.strip() or len(name) > RUN_NAME_MAX:
        raise ToolError("invalid_params", f"name: give 1-{RUN_NAME_MAX} characters")
    if not isinstance(lease_seconds, int) or not LEASE_MIN_S <= lease_seconds <= LEASE_MAX_S:
        raise ToolError("invalid_params", f"lease_seconds: give a whole number from {LEASE_MIN_S} to {LEASE_MAX_S}")
    now = timezone.now()
    with transaction.atomic():
        run = Run(
            name=name.strip(),
            metadata=metadata or {},
            owner_principal_id=principal.id,
            owner=principal.to_dict(),
            lease_seconds=lease_seconds,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            heartbeat_at=now,
        )
        run.full_clean()
        run.save(force_insert=True)
        events.run_event_append(run_id=run.pk, kind="run.started", payload={"name": run.name})
    run.refresh_from_db()
    return run


def run_heartbeat(*, run_id: str, principal: Principal) -> Run:
    """Renew the lease. An expired run cannot be revived: ToolError("run_expired") says to start a new one."""
    with transaction.atomic():
        run = run_access(run_id=run_id, principal=principal, lock=True)
        now = timezone.now()
        if run.state == RunState.ACTIVE and run.lease_expires_at > now:
            run.lease_expires_at = now + timedelta(seconds=run.lease_seconds)
            run.heartbeat_at = now
            run.save(update_fields=["lease_expires_at", "heartbeat_at", "updated_at"])
            return run
        if run.state == RunState.ACTIVE:  # expired but not swept yet: expire it now, consistently
            _run_end(run, RunState.EXPIRED, reason="run lease expired")
    raise ToolError(
        "run_expired" if run_state_now(run) == RunState.EXPIRED else "run_not_active",
        f"run {run.pk} is {run_state_now(run)}: its lease can no longer be renewed; start a new run (run.start)",
        data={"run_id": str(run.pk), "state": run_state_now(run)},
    )


def run_cancel(*, run_id: str, principal: Principal, reason: str = "") -> tuple[Run, list[Job]]:
    """Cancel the run and every in-flight job of it. An ended run is returned unchanged with no jobs (no-op)."""
    with transaction.atomic():
        run = run_access(run_id=run_id, principal=principal, lock=True)
        if run.state != RunState.ACTIVE:
            return run, []
        cancelled = _run_end(run, RunState.CANCELLED, reason=reason or f"run cancelled by {principal.id}")
        _audit(
            "run_cancel", principal=principal, run_id=run.pk, detail={"cancelled_jobs": [str(j.pk) for j in cancelled]}
        )
    return run, cancelled


def _run_end(run: Run, state: str, *, reason: str) -> list[Job]:
    """End an active run (caller holds its lock): cancel its in-flight jobs, then log the end."""
    cancelled = []
    for active in Job.objects.filter(run=run, state__in=ACTIVE_JOB_STATES).order_by("created_at"):
        job = _job_cancel(job=active, reason=reason)
        if not job.cancel_was_noop:  # type: ignore[attr-defined]
            cancelled.append(job)
    run.state = state
    run.ended_at = timezone.now()
    run.save(update_fields=["state", "ended_at", "updated_at"])
    events.run_event_append(
        run_id=run.pk,
        kind=f"run.{state}",
        payload={"reason": reason, "cancelled_jobs": [str(j.pk) for j in cancelled]},
    )
    return cancelled


def run_expire_leases(*, limit: int = 100) -> list[str]:
    """Expire active runs whose lease ran out, cancelling their jobs (the scheduler's sweep)."""
    expired = []
    with transaction.atomic():
        runs = list(
            Run.objects.select_for_update(skip_locked=True)
            .filter(state=RunState.ACTIVE, lease_expires_at__lte=timezone.now())
            .order_by("lease_expires_at")[:limit]
        )
        for run in runs:
            cancelled = _run_end(run, RunState.EXPIRED, reason="run lease expired")
            _audit(
                "run_expire", principal=None, run_id=run.pk, detail={"cancelled_jobs": [str(j.pk) for j in cancelled]}
            )
            expired.append(str(run.pk))
    return expired


# Audit outbox rows this old were left by a process that died before its drain thread moved them (it lingers 20 ms).
OUTBOX_LEFT_BEHIND_S = 5.0


def runs_sweep() -> dict[str, list[str]]:
    """One pass of the periodic maintenance: stale jobs, expired run leases, stalled messages, then the audit rows a
    process that died left in the outbox (its drain thread moves them at once otherwise)."""
    outcome = {
        "recovered_jobs": job_recover_stale(),
        "expired_runs": run_expire_leases(),
        "resent_jobs": job_resend_stalled(),
    }
    moved = 0
    while (batch := audit_outbox_drain(older_than_s=OUTBOX_LEFT_BEHIND_S)) > 0:
        moved += batch
    if moved:
        log.warning("runs sweep: moved %s audit row(s) a process left in the outbox into the chain", moved)
    return outcome
