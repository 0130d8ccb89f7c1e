"""Periodic audit work, run by the scheduler (hourly is a good default)."""

from __future__ import annotations

import dramatiq

from apps.audit.services import audit_digest_create


@dramatiq.actor(queue_name="maintenance", max_retries=3, time_limit=60_000)
def audit_digest(*_: object) -> None:
    """Sign the current head of the audit chain (a checkpoint `verify_audit_chain --digests` checks)."""
    audit_digest_create()
