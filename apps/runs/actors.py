"""One generic job actor per queue (a Dramatiq actor is bound to one queue), plus the maintenance sweep.

Dramatiq's own retries are off for these actors: retry state lives in Postgres (services.job_fail schedules
a delayed message), so the admin, the MCP task status and the dead-letter table agree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import dramatiq
from django.conf import settings

log = logging.getLogger(__name__)

# The longest any job may run; a job's own limit (its tool's timeout_s) is sent with each message.
JOB_ACTOR_TIME_LIMIT_MS = 6 * 3600 * 1000


# A delivery that lost its database connection is sent again this much later (a PostgreSQL restart takes seconds).
DB_LOST_REDELIVERY_MS = 2000


def _job_execute_on(queue: str) -> Callable[[str], None]:
    def _job_execute(job_id: str) -> None:
        from django.db import InterfaceError, OperationalError, connections

        from apps.runs.execution import job_execute

        try:
            job_execute(job_id=job_id)
        except (OperationalError, InterfaceError) as exc:
            # The database went away under this delivery (PostgreSQL restarted, say). Its row still says what is
            # left to do, so drop this thread's broken connections and deliver again shortly instead of leaving
            # the job for the sweep's RUNS_RESEND_AFTER_S resend; a duplicate is dropped by the claim. (The resent
            # message has the actor's time limit; the job's watcher still holds it to its tool's timeout_s.)
            connections.close_all()
            log.warning(
                "job %s: database unavailable (%s); delivering it again in %s ms", job_id, exc, DB_LOST_REDELIVERY_MS
            )
            job_execute_actor(queue).send_with_options(args=(job_id,), delay=DB_LOST_REDELIVERY_MS)

    return _job_execute


_job_actors: dict[str, dramatiq.Actor] = {
    queue: dramatiq.actor(
        actor_name=f"job_execute.{queue}",
        queue_name=queue,
        max_retries=0,
        time_limit=JOB_ACTOR_TIME_LIMIT_MS,
    )(_job_execute_on(queue))
    for queue in settings.DRAMATIQ_QUEUES
}


def job_execute_actor(queue: str) -> dramatiq.Actor:
    try:
        return _job_actors[queue]
    except KeyError:
        raise ValueError(
            f"no job actor for queue {queue!r}: queues are {', '.join(settings.DRAMATIQ_QUEUES)}"
        ) from None


@dramatiq.actor(queue_name="maintenance", max_retries=0, time_limit=60_000)
def runs_sweep() -> None:
    """Requeue jobs whose worker died and expire run leases. Sent by `manage.py run_scheduler`."""
    from apps.runs.services import runs_sweep as sweep

    outcome = sweep()
    if any(outcome.values()):
        log.info("runs sweep: %s", outcome)
