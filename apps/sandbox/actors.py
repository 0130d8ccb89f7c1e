"""Sandbox maintenance actors. The tools themselves run through the jobs runtime (apps.runs) on the `sandbox` queue.

The scheduler (apps.runs.scheduler.PERIODIC) sends `sandbox_reap` every 30 s; operators can also run
`manage.py sandbox_reap` (or `--loop 30`).
"""

from __future__ import annotations

import logging

import dramatiq

from apps.sandbox import runtime, services

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name="maintenance", max_retries=0, time_limit=300_000)
def sandbox_reap() -> None:
    """Destroy expired/idle sandboxes and orphaned containers, mark vanished rows, top up the warm pool.

    The scheduler sends this every 30 s, so an unreachable engine is one warning per period, not a retry storm;
    expired rows stay live and the next period reaps them.
    """
    try:
        report = services.sandbox_reap()
    except runtime.EngineUnavailable as exc:
        log.warning("sandbox reaper skipped: %s", exc)
        return
    log.info("sandbox reaper: %s", report.as_dict())


@dramatiq.actor(queue_name="sandbox", max_retries=0, time_limit=300_000)
def sandbox_pool_refill() -> None:
    """Top up the warm pool of the default image to SANDBOX_POOL_SIZE."""
    services.pool_refill()
