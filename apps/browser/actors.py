"""Browser actors: the maintenance sweep (idle and orphaned sessions)."""

from __future__ import annotations

import dramatiq

from apps.browser import services


@dramatiq.actor(queue_name="maintenance", max_retries=0, time_limit=60_000)
def browser_sessions_reap() -> None:
    """Drop expired and orphaned session leases (owner worker dead); live workers close their own idle contexts."""
    services.sessions_reap()
