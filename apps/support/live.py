"""Live updates of the support pages: how the WebSocket consumers learn that something new happened.

Decision: the consumers **poll the database by sequence** (the audit event `sequence`, a run's event `seq`),
about once a second, and the channel layer only **nudges** them to poll at once. Why:
- the database is the only source of truth: a nudge lost in Redis, a consumer that was reconnecting, or a
  writer that never calls the hook delays an event by at most one poll interval, never loses it;
- catching up after a dropped socket is the same query as live tailing (`sequence > last seen`), so the
  reconnect path is exercised all the time, not only on failure;
- a poll is an index range scan from the current head (tens of microseconds), so N open pages cost N tiny
  queries a second.
`audit_appended_notify()` is the optional hook a writer may call after commit to cut the latency to ~0.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

AUDIT_GROUP = "support.audit"
NUDGE = {"type": "support.nudge"}


async def audit_appended_anotify() -> None:
    """Wake every audit live tail now (best effort: they poll anyway)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(AUDIT_GROUP, NUDGE)
    except Exception:
        log.warning("support: audit live-tail nudge not sent", exc_info=True)


def audit_appended_notify() -> None:
    """Sync form of `audit_appended_anotify`, for `transaction.on_commit` in sync writers."""
    async_to_sync(audit_appended_anotify)()
