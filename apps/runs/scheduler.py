"""The periodic-work table and the loop behind `manage.py run_scheduler` (one process per deployment).

`PERIODIC` below is the one schedule (documented in docs/queues.md): each row names an app's actor and its period.
The scheduler only *sends* messages; maintenance workers do the work, so a slow sweep never
delays the clock. A Redis lease makes a second scheduler a standby instead of a duplicate.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import dramatiq
import redis
from django.conf import settings
from django.utils.module_loading import autodiscover_modules

log = logging.getLogger(__name__)

LEADER_KEY = "mcpplat:scheduler:leader"


@dataclass(frozen=True)
class Periodic:
    name: str
    every_s: float
    send: Callable[[], object]


SCHEDULE: dict[str, Periodic] = {}

# The schedule: (app, actor name, period in seconds or the setting holding it). Rows of apps not installed are
# skipped. Keep docs/queues.md ("Periodic work") in step.
PERIODIC: tuple[tuple[str, str, float | str], ...] = (
    ("apps.runs", "runs_sweep", "RUNS_SCHEDULER_TICK_S"),  # stale jobs, lost messages, run leases
    ("apps.sandbox", "sandbox_reap", 30),  # expired/idle sandboxes, orphaned containers, warm pool
    ("apps.browser", "browser_sessions_reap", 60),  # expired and orphaned browser session leases
    ("apps.audit", "audit_digest", 3600),  # signed checkpoint of the audit chain
)


def every(seconds: float) -> Callable[[dramatiq.Actor], dramatiq.Actor]:
    """Send this (argument-less) actor every `seconds`. A message older than 5 periods is dropped (AgeLimit),
    so a stopped maintenance pool does not come back to a pile of sweeps."""

    def register(actor: dramatiq.Actor) -> dramatiq.Actor:
        max_age = int(max(seconds * 5, 10) * 1000)
        SCHEDULE[actor.actor_name] = Periodic(
            actor.actor_name, float(seconds), lambda: actor.send_with_options(max_age=max_age)
        )
        return actor

    return register


def load_schedule() -> dict[str, Periodic]:
    """Import every app's actor modules, as `rundramatiq` does, and register the `PERIODIC` rows of installed apps."""
    from django.apps import apps

    autodiscover_modules(*settings.DRAMATIQ_AUTODISCOVER_MODULES)
    broker = dramatiq.get_broker()
    for app, actor_name, period in PERIODIC:
        if not apps.is_installed(app):
            continue
        seconds = float(getattr(settings, period) if isinstance(period, str) else period)
        every(seconds)(broker.get_actor(actor_name))
    return SCHEDULE


def run_forever(stop: threading.Event, *, tick_s: float = 0.1) -> None:
    """Send each periodic actor when due while this process holds the leader lease; return when `stop` is set."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    lease_ms = int(max(5.0, 3 * max((p.every_s for p in SCHEDULE.values()), default=1.0)) * 1000)
    due = dict.fromkeys(SCHEDULE, 0.0)
    leader = False
    log.info("scheduler %s: %s", me, ", ".join(f"{p.name} every {p.every_s:g} s" for p in SCHEDULE.values()))
    while not stop.is_set():
        try:
            leader = _hold_lease(client, me, lease_ms)
        except redis.RedisError as exc:
            log.warning("scheduler: Redis unavailable (%s); retrying", exc)
            leader = False
        if leader:
            now = time.monotonic()
            for name, periodic in SCHEDULE.items():
                if now >= due[name]:
                    try:
                        periodic.send()
                    except Exception:
                        log.exception("scheduler: could not send %s", name)
                    due[name] = now + periodic.every_s
        stop.wait(tick_s if leader else lease_ms / 3000)
    if leader:
        _release(client, me)


def _hold_lease(client: redis.Redis, me: str, lease_ms: int) -> bool:
    if client.set(LEADER_KEY, me, nx=True, px=lease_ms):
        return True
    holder = client.get(LEADER_KEY)
    if holder == me.encode():
        client.pexpire(LEADER_KEY, lease_ms)
        return True
    return False


def _release(client: redis.Redis, me: str) -> None:
    try:
        if client.get(LEADER_KEY) == me.encode():
            client.delete(LEADER_KEY)
    except redis.RedisError:
        pass
