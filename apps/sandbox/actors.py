"""Sandbox maintenance actors. The tools themselves run through the jobs runtime (apps.runs) on the `sandbox` queue.

Schedule `sandbox_reap` every 30 s on the scheduler (dramatiq-crontab or equivalent, one instance); operators can
also run `manage.py sandbox_reap` (or `--loop 30`).
"""

from __future__ import annotations

import logging

import dramatiq

from apps.sandbox import services

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name="maintenance", max_retries=3, time_limit=300_000)
def sandbox_reap() -> None:
    """Destroy expired/idle sandboxes and orphaned containers, mark vanished rows, top up the warm pool."""
    report = services.sandbox_reap()
    log.info("sandbox reaper: %s", report.as_dict())


@dramatiq.actor(queue_name="sandbox", max_retries=0, time_limit=300_000)
def sandbox_pool_refill() -> None:
    """Top up the warm pool of the default image to SANDBOX_POOL_SIZE."""
    services.pool_refill()
