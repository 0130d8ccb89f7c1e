"""The periodic-work table and the loop behind `manage.py run_scheduler` (one process per deployment).

`PERIODIC` below is the one schedule (documented in docs/queues.md): each row names an app's actor and its period.
The scheduler only *sends* messages; maintenance workers do the work, so a slow sweep never
delays the clock. A Redis lease makes a second scheduler a standby instead of a duplicate.
"""

from __future__ import annotations

import contextlib
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


# The leader lease (docs/reliability.md, "Scheduler"): short, renewed often, so a dead leader is replaced within
# LEASE_S + STANDBY_CHECK_S whatever the periods in the schedule are.
LEASE_S = 15.0
RENEW_S = 5.0
STANDBY_CHECK_S = 2.0
# After a Redis error, or a send that failed, try again this soon rather than after a period.
RETRY_S = 1.0

# Take the lease if nobody holds it, renew it if we do: one step, so a lease that expired between a GET and a
# PEXPIRE is never extended for its new holder.
_HOLD = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then
    redis.call('pexpire', KEYS[1], ARGV[2])
    return 1
end
if not holder then
    redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def run_forever(
    stop: threading.Event,
    *,
    tick_s: float = 0.1,
    lease_s: float = LEASE_S,
    renew_s: float = RENEW_S,
    standby_check_s: float = STANDBY_CHECK_S,
    retry_s: float = RETRY_S,
    redis_url: str | None = None,
) -> None:
    """Send each periodic actor when due while this process holds the leader lease; return when `stop` is set.

    Each actor has its own next-due time. A leader that cannot reach Redis stays leader while its last renewal is
    younger than `lease_s` and renews (or takes the lease again) as soon as Redis answers; a standby asks every
    `standby_check_s`.
    """
    client = redis.Redis.from_url(redis_url or settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    hold, release = client.register_script(_HOLD), client.register_script(_RELEASE)
    me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    lease_ms = int(lease_s * 1000)
    due = dict.fromkeys(SCHEDULE, 0.0)
    leader_until = 0.0  # monotonic time our lease runs out, as far as we know
    ask_at = 0.0
    log.info(
        "scheduler %s: %s; lease %g s",
        me,
        ", ".join(f"{p.name} every {p.every_s:g} s" for p in SCHEDULE.values()),
        lease_s,
    )
    while not stop.is_set():
        now = time.monotonic()
        if now >= ask_at:
            was_leader = now < leader_until
            try:
                held = bool(hold(keys=[LEADER_KEY], args=[me, lease_ms]))
            except redis.RedisError as exc:
                log.warning("scheduler: Redis unavailable (%s); asking again in %g s", exc, retry_s)
                ask_at = now + retry_s
            else:
                leader_until = now + lease_s if held else 0.0
                ask_at = now + (renew_s if held else standby_check_s)
                if held != was_leader:
                    log.info("scheduler %s: %s", me, "leader" if held else "standby (another scheduler leads)")
        if now < leader_until:
            for name, periodic in SCHEDULE.items():
                if now >= due[name]:
                    try:
                        periodic.send()
                    except Exception:
                        log.exception("scheduler: could not send %s; trying again in %g s", name, retry_s)
                        due[name] = now + min(retry_s, periodic.every_s)
                    else:
                        due[name] = now + periodic.every_s
        stop.wait(tick_s)
    if time.monotonic() < leader_until:
        with contextlib.suppress(redis.RedisError):
            release(keys=[LEADER_KEY], args=[me])
