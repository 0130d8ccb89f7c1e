"""The event logs: per-job events (Postgres + a Redis stream per job) and the per-run sequence.

Both sequences are gap-free: the next number comes from a counter column incremented with
`UPDATE … RETURNING` inside the event's own transaction, so the counter row stays locked until commit and a
rolled-back event gives its number back. The Redis stream entry of job event `seq` has the id `0-<seq>`, so
Postgres and Redis agree on ids and a reader can fill any gap (Redis lost or restarted) from Postgres.
"""

from __future__ import annotations

import json
import logging
import threading
from functools import partial
from typing import Any

import redis
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.common.db import db_call  # noqa: F401 - re-exported: callers use events.db_call
from apps.runs.models import TERMINAL_JOB_STATES, Id, Job, JobEvent, RunEvent

log = logging.getLogger(__name__)


_client_lock = threading.Lock()
_client: redis.Redis | None = None

# Job events that are not mirrored into the run's log (they carry no information a resuming client needs).
_NOT_MIRRORED = {"heartbeat"}


def redis_client() -> redis.Redis:
    """This process's Redis client for publishing events and cancel flags (thread-safe pool)."""
    global _client  # noqa: PLW0603
    if _client is None:
        with _client_lock:
            if _client is None:
                _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, health_check_interval=30)
    return _client


def stream_key(job_id: Id) -> str:
    return f"mcpplat:job:{job_id}:events"


def cancel_key(job_id: Id) -> str:
    return f"mcpplat:job:{job_id}:cancel"


def run_event_append(*, run_id: Id, kind: str, payload: dict[str, Any], job_id: Id | None = None) -> int:
    """Append to a run's log and return its sequence number. Must run inside a transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE runs_run SET last_seq = last_seq + 1, updated_at = %s WHERE id = %s RETURNING last_seq",
            [timezone.now(), run_id],
        )
        (seq,) = cursor.fetchone()
    RunEvent.objects.create(run_id=run_id, seq=seq, kind=kind, payload=payload, job_id=job_id)
    return int(seq)


def job_event_append(*, job: Job, kind: str, payload: dict[str, Any]) -> JobEvent:
    """Append an event to a job whose row the caller holds locked and saves afterwards with `last_event_seq`
    among its update_fields (state transitions). Must run in a transaction."""
    job.last_event_seq += 1
    return _store(job_id=job.pk, run_id=job.run_id, tool=job.tool, seq=job.last_event_seq, kind=kind, payload=payload)


# A progress event is written only above the job's high-water mark (`progress_high`, kept across attempts), so a
# retry that starts counting again from 0 publishes nothing until it passes what the lost attempt had reached.
_PROGRESS_EMIT_SQL = """
WITH old AS (
    SELECT id, (progress_high IS NULL OR progress_high < %(p)s) AS above
      FROM runs_job WHERE id = %(id)s AND NOT (state = ANY(%(terminal)s)) FOR UPDATE
)
UPDATE runs_job SET last_event_seq = last_event_seq + CASE WHEN old.above THEN 1 ELSE 0 END,
       progress_high = CASE WHEN old.above THEN %(p)s ELSE progress_high END
  FROM old WHERE runs_job.id = old.id
RETURNING runs_job.last_event_seq, runs_job.run_id, runs_job.tool, old.above
"""

# What job_event_emit returns for a progress event at or below the high-water mark: nothing written, job still open.
BELOW_HIGH_WATER = "below high-water mark"


def job_event_emit(*, job_id: Id, kind: str, payload: dict[str, Any]) -> JobEvent | str | None:
    """Append a progress/log/heartbeat event from a running job; None when the job already ended, BELOW_HIGH_WATER
    for a progress value not above the highest one already published for the job (progress only increases).

    Takes only the counter row's lock for the length of one short transaction, so a worker never blocks
    a cancel for longer than that.
    """
    terminal = [str(s) for s in TERMINAL_JOB_STATES]
    with transaction.atomic():
        with connection.cursor() as cursor:
            if kind == "progress":
                cursor.execute(_PROGRESS_EMIT_SQL, {"id": job_id, "terminal": terminal, "p": payload["progress"]})
                found = cursor.fetchone()
                if found is not None and not found[3]:
                    return BELOW_HIGH_WATER
                row = found[:3] if found is not None else None
            else:
                cursor.execute(
                    "UPDATE runs_job SET last_event_seq = last_event_seq + 1 WHERE id = %s AND NOT (state = ANY(%s)) "
                    "RETURNING last_event_seq, run_id, tool",
                    [job_id, terminal],
                )
                row = cursor.fetchone()
        if row is None:
            return None
        seq, run_id, tool = row
        return _store(job_id=job_id, run_id=run_id, tool=tool, seq=int(seq), kind=kind, payload=payload)


def _store(*, job_id: Id, run_id: Id | None, tool: str, seq: int, kind: str, payload: dict[str, Any]) -> JobEvent:
    event = JobEvent.objects.create(job_id=job_id, seq=seq, kind=kind, payload=payload)
    if run_id is not None and kind not in _NOT_MIRRORED:
        run_event_append(
            run_id=run_id,
            kind=f"job.{kind}",
            payload={"job_id": str(job_id), "tool": tool, "job_seq": seq, **payload},
            job_id=job_id,
        )
    transaction.on_commit(partial(_publish, event))
    return event


# The two hot transitions of every queued call, each as ONE statement (its own transaction in autocommit): the job
# row changes only if its state (and, for the result, the claim) still allows it, and the job event (plus its run
# mirror when the job belongs to a run) is written with it. Same rows as services._transition_locked writes; when
# the WHERE does not match, the caller takes that slower, fully checked path.
_FAST_TRANSITION_SQL = """
WITH moved AS (
    UPDATE runs_job SET {assignments}, updated_at = %(now)s, last_event_seq = last_event_seq + 1
     WHERE id = %(id)s AND {condition}
 RETURNING *
), job_event AS (
    INSERT INTO runs_jobevent (job_id, seq, kind, payload, created_at)
    SELECT id, last_event_seq, %(kind)s, {payload}, %(now)s FROM moved
), run_seq AS (
    UPDATE runs_run SET last_seq = last_seq + 1, updated_at = %(now)s
     WHERE id = (SELECT run_id FROM moved) RETURNING id, last_seq
), run_event AS (
    INSERT INTO runs_runevent (run_id, seq, kind, payload, job_id, created_at)
    SELECT run_seq.id, run_seq.last_seq, %(run_kind)s,
           jsonb_build_object('job_id', moved.id::text, 'tool', moved.tool, 'job_seq', moved.last_event_seq)
             || {payload},
           moved.id, %(now)s
      FROM run_seq, moved
)
SELECT * FROM moved
"""

_CLAIM_SQL = _FAST_TRANSITION_SQL.format(
    assignments="state = 'running', attempts = attempts + 1, worker_id = %(worker)s, next_attempt_at = NULL, "
    "started_at = COALESCE(started_at, %(now)s), heartbeat_at = %(now)s",
    condition="state IN ('queued', 'retrying')",
    payload="jsonb_build_object('state', 'running', 'attempt', moved.attempts)",
)
_SUCCEED_SQL = _FAST_TRANSITION_SQL.format(
    assignments="state = 'succeeded', result = %(result)s::jsonb, finished_at = %(now)s",
    condition="state = 'running' AND worker_id = %(worker)s",
    payload="jsonb_build_object('state', 'succeeded', 'result', moved.result)",
)


def job_fast_transition(*, job_id: Id, to: str, worker_id: str, result: dict[str, Any] | None = None) -> Job | None:
    """queued/retrying → running (`to="running"`) or running → succeeded for the holder of the claim, in one round
    trip; None when the row does not qualify (then use services.job_transition, which says why)."""
    now = timezone.now()
    sql, kind = (_CLAIM_SQL, "state") if to == "running" else (_SUCCEED_SQL, "result")
    params = {"now": now, "id": job_id, "worker": worker_id, "kind": kind, "run_kind": f"job.{kind}"}
    if result is not None:
        params["result"] = json.dumps(result)
    moved = list(Job.objects.raw(sql, params))
    if not moved:
        return None
    job = moved[0]
    payload: dict[str, Any] = {"state": to}
    payload.update({"attempt": job.attempts} if to == "running" else {"result": job.result})
    event = JobEvent(job_id=job.pk, seq=job.last_event_seq, kind=kind, payload=payload, created_at=now)
    transaction.on_commit(partial(_publish, event))
    return job


def _publish(event: JobEvent) -> None:
    """XADD after commit. Losing this (Redis down, or a later seq published first) loses nothing: readers fill
    gaps from Postgres."""
    created = event.created_at or timezone.now()
    fields = {"kind": event.kind, "payload": json.dumps(event.payload), "at": created.isoformat()}
    key = stream_key(event.job_id)
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.xadd(key, fields, id=f"0-{event.seq}")  # type: ignore[arg-type]
        pipe.expire(key, settings.RUNS_STREAM_TTL_S)
        pipe.execute()
    except redis.ResponseError as exc:  # an older seq after a newer one: the reader fills it from Postgres
        log.debug("job %s event %s not streamed: %s", event.job_id, event.seq, exc)
    except redis.RedisError as exc:
        log.warning(
            "job %s event %s not streamed (Redis unavailable: %s); readers use Postgres", event.job_id, event.seq, exc
        )
