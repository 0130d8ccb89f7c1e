"""Live job events for the gateway: `job_events(job_id, after=…)` reads the job's Redis stream and falls back to
Postgres for anything Redis does not have (stream expired, Redis restarted, an entry published out of order).

Event ids are the job's gap-free sequence numbers as strings ("1", "2", …): pass the last one you saw as
`after` to resume, on any replica. The iterator ends after the terminal event (result, error or cancelled).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator
from datetime import datetime

import redis
import redis.asyncio as aredis
from asgiref.sync import sync_to_async
from django.conf import settings

from apps.gateway.registry import ToolError
from apps.runs import events, selectors
from apps.runs.models import TERMINAL_EVENT_KINDS, Job, JobEvent, Run, RunEvent, RunState

# Longest XREAD BLOCK; after each empty wait Postgres is checked, so a lost Redis costs at most this much delay.
BLOCK_MS = 1000
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aredis.Redis] = weakref.WeakKeyDictionary()


def _client() -> aredis.Redis:
    """An async client per event loop, its socket timeout well above BLOCK_MS (redis-py's default 5 s would
    break longer blocking reads; spikes.md)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = aredis.Redis.from_url(settings.REDIS_URL, socket_timeout=BLOCK_MS / 1000 + 30)
        _clients[loop] = client
    return client


def parse_cursor(after: str | int | None) -> int:
    if after is None or after == "":
        return 0
    try:
        value = int(after)
    except (TypeError, ValueError):
        value = -1
    if value < 0:
        raise ToolError("invalid_params", f"after: {after!r} is not an event id this server sent (use the id field)")
    return value


def _pg_after(job_id: str, cursor: int) -> list[JobEvent] | None:
    if not Job.objects.filter(pk=job_id).exists():
        return None
    return selectors.job_events_after(job_id, cursor)


_pg_after_async = sync_to_async(_pg_after, thread_sensitive=False)


def _from_entry(job_id: str, seq: int, fields: dict[bytes, bytes]) -> JobEvent:
    return JobEvent(
        job_id=job_id,
        seq=seq,
        kind=fields[b"kind"].decode(),
        payload=json.loads(fields[b"payload"]),
        created_at=datetime.fromisoformat(fields[b"at"].decode()),
    )


async def job_events(job_id: str, *, after: str | None = None) -> AsyncIterator[JobEvent]:
    """Every event of the job after `after`, in order without gaps, then stop after the terminal event.

    The caller authorizes first (`selectors.job_get`). Raises ToolError("job_not_found") for an unknown job.
    """
    job_id = str(job_id)
    cursor = parse_cursor(after)
    key = events.stream_key(job_id)
    block: int | None = None  # the first read does not wait: a finished job with an expired stream answers at once
    while True:
        try:
            response = await _client().xread({key: f"0-{cursor}"}, count=100, block=block)
        except (redis.RedisError, OSError):
            response = None
            await asyncio.sleep(BLOCK_MS / 1000 if block else 0)
        entries = response[0][1] if response else []
        if not entries:
            stored = await _pg_after_async(job_id, cursor)
            if stored is None:
                raise ToolError("job_not_found", f"no job {job_id}")
            for event in stored:
                yield event
                cursor = event.seq
                if event.is_terminal:
                    return
            block = BLOCK_MS
            continue
        for entry_id, fields in entries:
            seq = int(entry_id.split(b"-")[1])
            if seq > cursor + 1:  # Redis missed some: Postgres has them (committed before this one was numbered)
                for event in await _pg_after_async(job_id, cursor) or []:
                    if event.seq >= seq:
                        break
                    yield event
                    cursor = event.seq
                    if event.is_terminal:
                        return
            event = _from_entry(job_id, seq, fields)
            yield event
            cursor = seq
            if event.kind in TERMINAL_EVENT_KINDS:
                return
        block = BLOCK_MS


def _run_page(run_id: str, cursor: int) -> tuple[list[RunEvent], bool]:
    page = selectors.run_events(run_id, after_seq=cursor)
    state = Run.objects.filter(pk=run_id).values_list("state", flat=True).first()
    return page, state == RunState.ACTIVE


async def run_events(run_id: str, *, after_seq: int = 0, poll_s: float = 0.5) -> AsyncIterator[RunEvent]:
    """A run's events after `after_seq` from Postgres (the run log's only store), following the run until it ends."""
    cursor = after_seq
    page_async = sync_to_async(_run_page, thread_sensitive=False)
    while True:
        page, active = await page_async(str(run_id), cursor)
        for event in page:
            yield event
            cursor = event.seq
        if not page and not active:
            return
        if not page:
            await asyncio.sleep(poll_s)
