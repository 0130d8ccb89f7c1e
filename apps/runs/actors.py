"""One generic job actor per queue (a Dramatiq actor is bound to one queue), plus the maintenance sweep.

Dramatiq's own retries are off for these actors: retry state lives in Postgres (services.job_fail schedules
a delayed message), so the admin, the MCP task status and the dead-letter table agree.
"""

from __future__ import annotations

import logging

import dramatiq
from django.conf import settings

log = logging.getLogger(__name__)

# The longest any job may run; a job's own limit (its tool's timeout_s) is sent with each message.
JOB_ACTOR_TIME_LIMIT_MS = 6 * 3600 * 1000


def _job_execute(job_id: str) -> None:
    from apps.runs.execution import job_execute

    job_execute(job_id=job_id)


_job_actors: dict[str, dramatiq.Actor] = {
    queue: dramatiq.actor(
        actor_name=f"job_execute.{queue}",
        queue_name=queue,
        max_retries=0,
        time_limit=JOB_ACTOR_TIME_LIMIT_MS,
    )(_job_execute)
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
