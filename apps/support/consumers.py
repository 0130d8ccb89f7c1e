"""WebSocket consumers of the support pages: the audit live tail and the live run and job timelines.

Each consumer polls by sequence (see apps/support/live.py for why) and sends only what is new after the
cursor the page gave when it connected, so a page that reconnects after a drop catches up exactly.
Access is checked at connect and the session re-checked every SESSION_CHECK_S: an expired or logged-out
session gets a message and close code 4401 (the page then stops reconnecting and says to sign in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.http import QueryDict
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY

from apps.support import selectors
from apps.support.access import SupportAccess, scope_access
from apps.support.filters import BIGINT_MAX, AuditFilters, form_problems, parse_filters
from apps.support.live import AUDIT_GROUP

log = logging.getLogger(__name__)

POLL_S = 1.0
SESSION_CHECK_S = 15.0
CLOSE_SESSION = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_BAD_REQUEST = 4400
CLOSE_NOT_FOUND = 4404


def _session_alive(session_key: str | None, user_pk: Any) -> bool:
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    data = store.load()
    return str(data.get(SESSION_KEY)) == str(user_pk) and bool(data.get(DEVICE_ID_SESSION_KEY))


class _LiveConsumer(AsyncJsonWebsocketConsumer):
    """Accept, then: poll → send → wait (nudge or POLL_S) → …, with a periodic session check."""

    group: str | None = None
    access: SupportAccess
    _task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.access = await database_sync_to_async(scope_access)(self.scope)
        await self.accept()  # accept first, so a refusal can say why (a rejected handshake says nothing)
        if not self.access.can_read:
            code = CLOSE_FORBIDDEN if self.access.verified else CLOSE_SESSION
            await self.refuse(code, self.access.reason())
            return
        self.params = QueryDict(self.scope.get("query_string", b"").decode("latin-1"))
        problem = await self.setup()
        if problem is not None:
            await self.refuse(*problem)
            return
        self._wake = asyncio.Event()
        if self.group:
            await self.channel_layer.group_add(self.group, self.channel_name)
        self._task = asyncio.create_task(self._run())

    async def refuse(self, code: int, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.group:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(self.group, self.channel_name)

    async def support_nudge(self, event: dict[str, Any]) -> None:
        self._wake.set()

    async def _run(self) -> None:
        checked = time.monotonic()
        session_key = getattr(self.scope.get("session"), "session_key", None)
        try:
            while True:
                more = await self.poll()
                if time.monotonic() - checked > SESSION_CHECK_S:
                    checked = time.monotonic()
                    if not await database_sync_to_async(_session_alive)(session_key, self.access.user.pk):
                        await self.refuse(CLOSE_SESSION, "Your session has ended: reload the page and sign in again.")
                        return
                if more:
                    continue  # catching up: the next batch at once
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("support live consumer failed")
            with contextlib.suppress(Exception):
                await self.refuse(1011, "The live view failed on the server; it reconnects by itself.")

    async def setup(self) -> tuple[int, str] | None:
        raise NotImplementedError

    async def poll(self) -> bool:
        """Send what is new; True if there may be more right away."""
        raise NotImplementedError


def _cursor(params: QueryDict, name: str) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    if not value.isdigit() or int(value) > BIGINT_MAX:
        raise ValueError(f"{name}: give the last sequence number you saw (a whole number ≥ 0)")
    return int(value)


# -------------------------------------------------------------------------------------------- audit tail


def _audit_row(event: Any) -> dict[str, Any]:
    return {
        "sequence": event.sequence,
        "created_at": event.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "principal_id": event.principal_id,
        "identity_source": event.identity_source,
        "method": event.method,
        "tool": event.tool,
        "outcome": event.outcome,
        "error_code": event.error_code,
        "latency_ms": event.latency_ms,
        "url": reverse("support:audit_event", args=[event.sequence]),
    }


class AuditTailConsumer(_LiveConsumer):
    group = AUDIT_GROUP
    batch = 200

    async def setup(self) -> tuple[int, str] | None:
        form, filters = parse_filters(self.params)
        if filters is None:
            return CLOSE_BAD_REQUEST, f"Live tail not started: {form_problems(form)}"
        self.filters: AuditFilters = filters
        try:
            after = _cursor(self.params, "after")
        except ValueError as exc:
            return CLOSE_BAD_REQUEST, f"Live tail not started: {exc}"
        self.after = after if after is not None else await database_sync_to_async(selectors.audit_head_sequence)()
        await self.send_json({"type": "hello", "after": self.after})
        return None

    async def poll(self) -> bool:
        events = await database_sync_to_async(selectors.audit_events_after)(
            self.filters, after_sequence=self.after, limit=self.batch
        )
        if events:
            self.after = events[-1].sequence
            await self.send_json({"type": "events", "events": [_audit_row(e) for e in events], "last": self.after})
        return len(events) == self.batch


# ----------------------------------------------------------------------------------------- runs and jobs


def _job_row(job: Any) -> dict[str, Any]:
    return {
        "id": str(job.pk),
        "tool": job.tool,
        "state": job.state,
        "attempts": job.attempts,
        "updated_at": job.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
        "url": reverse("support:job", args=[job.pk]),
    }


def _event_row(event: Any) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "kind": event.kind,
        "job_id": str(event.job_id) if getattr(event, "job_id", None) else "",
        "payload": event.payload,
        "created_at": event.created_at.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _snapshot(obj: Any, events: list[Any], jobs: list[Any]) -> dict[str, Any]:
    return {"state": obj.state, "events": [_event_row(e) for e in events], "jobs": [_job_row(j) for j in jobs]}


def _run_snapshot(object_id: uuid.UUID, after: int) -> dict[str, Any] | None:
    run = selectors.run_get(object_id)
    return (
        None
        if run is None
        else _snapshot(run, selectors.run_timeline(run, after_seq=after, limit=500), selectors.run_jobs(run))
    )


def _job_snapshot(object_id: uuid.UUID, after: int) -> dict[str, Any] | None:
    job = selectors.job_get(object_id)
    return None if job is None else _snapshot(job, selectors.job_timeline(job, after_seq=after, limit=500), [job])


class _TimelineConsumer(_LiveConsumer):
    what = "run"
    snapshot = staticmethod(_run_snapshot)

    async def setup(self) -> tuple[int, str] | None:
        try:
            self.object_id = uuid.UUID(self.scope["url_route"]["kwargs"]["object_id"])
            after = _cursor(self.params, "after")
        except ValueError as exc:
            return CLOSE_BAD_REQUEST, f"Live view not started: {exc}"
        self.after = after or 0
        self.last_state: Any = None
        return None

    async def poll(self) -> bool:
        snap = await database_sync_to_async(self.snapshot)(self.object_id, self.after)
        if snap is None:
            await self.refuse(CLOSE_NOT_FOUND, f"This {self.what} no longer exists.")
            raise asyncio.CancelledError
        state = (snap["state"], [(j["id"], j["state"], j["attempts"]) for j in snap["jobs"]])
        if snap["events"] or state != self.last_state:
            if snap["events"]:
                self.after = snap["events"][-1]["seq"]
            self.last_state = state
            await self.send_json({"type": "timeline", **snap, "last": self.after})
        return len(snap["events"]) == 500


class RunTimelineConsumer(_TimelineConsumer):
    what = "run"
    snapshot = staticmethod(_run_snapshot)


class JobTimelineConsumer(_TimelineConsumer):
    what = "job"
    snapshot = staticmethod(_job_snapshot)
