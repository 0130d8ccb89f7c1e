"""The TTL reaper leaves zero expired runtime: expired, idle, orphaned, half-started and vanished all handled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from apps.sandbox import runtime, services
from apps.sandbox.models import LIVE_STATES, Sandbox
from apps.sandbox.tests.conftest import make_principal

pytestmark = [pytest.mark.usefixtures("engine")]

ROOT = settings.BASE_DIR


def orphan(name: str) -> str:
    """A labelled container no row owns (its worker died between the engine call and the database)."""
    return runtime.container_start(
        runtime.ContainerSpec(
            sandbox_id=name,
            image=settings.SANDBOX_DEFAULT_IMAGE,
            owner="test:orphan",
            expires_epoch=int(time.time()) + 3600,
            memory_mb=64,
            cpus=0.5,
            pids=32,
            disk_mb=4,
        )
    )


@pytest.mark.django_db
def test_reaper_leaves_zero_expired_runtime():
    # given many short-TTL and short-idle sandboxes, live ones, orphans, a stale start and a vanished container
    caller = make_principal("admin")
    short = [services.sandbox_create(principal=caller, ttl_s=1) for _ in range(8)]
    idle = [services.sandbox_create(principal=caller, idle_ttl_s=1) for _ in range(4)]
    keep = [services.sandbox_create(principal=caller, ttl_s=600) for _ in range(2)]
    orphans = [orphan(f"orphan-{n}") for n in range(3)]
    stale = Sandbox.objects.create(
        owner_id=caller.id,
        image="x",
        ttl_s=600,
        idle_ttl_s=600,
        last_used_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=1),
        idle_expires_at=timezone.now() + timedelta(hours=1),
    )
    Sandbox.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    vanished = services.sandbox_create(principal=caller)
    runtime.container_remove(vanished.container_id)
    time.sleep(1.1)
    # when the reaper runs
    report = services.sandbox_reap(refill_pool=False)
    # then nothing expired is left running, the live ones are untouched, and the report counts each kind
    now = timezone.now()
    expired_live = Sandbox.objects.filter(state__in=LIVE_STATES).filter(expires_at__lte=now) | Sandbox.objects.filter(
        state__in=LIVE_STATES, idle_expires_at__lte=now
    )
    assert expired_live.count() == 0
    running = {c.sandbox_id for c in runtime.containers_labelled()}
    assert running == {str(s.id) for s in keep}
    assert (report.expired, report.idle, report.orphans_removed) == (8, 4, 3)
    assert (report.stale_starting, report.vanished) == (1, 1)
    assert all(Sandbox.objects.get(pk=s.pk).destroy_reason == "ttl" for s in short)
    assert all(Sandbox.objects.get(pk=s.pk).destroy_reason == "idle_ttl" for s in idle)
    # and a second pass finds nothing to do
    assert services.sandbox_reap(refill_pool=False).as_dict() == dict.fromkeys(report.as_dict(), 0)
    assert orphans  # (removed above)


CREATOR = """
import django, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpplat.settings.test")
django.setup()
from django.conf import settings
settings.SANDBOX_SCOPE = sys.argv[1]
settings.SANDBOX_POOL_SIZE = 0
from apps.sandbox import services
from apps.sandbox.tests.conftest import make_principal
caller = make_principal("admin", pid="user:killed-worker")
print("ready", flush=True)
while True:
    services.sandbox_create(principal=caller, ttl_s=2)
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_reaper_cleans_up_after_a_worker_killed_mid_create():
    # given a worker process creating short-TTL sandboxes, killed -9 in the middle of its work
    env = {**os.environ, "MCPPLAT_TEST_WORKER_DB": settings.DATABASES["default"]["NAME"]}
    proc = subprocess.Popen(
        [sys.executable, "-c", CREATOR, settings.SANDBOX_SCOPE], cwd=ROOT, env=env, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    deadline = time.monotonic() + 20
    while Sandbox.objects.filter(owner_id="user:killed-worker").count() < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.13)  # land somewhere inside a create
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    created = Sandbox.objects.filter(owner_id="user:killed-worker").count()
    assert created >= 5
    # when the TTLs (and the stale-start window) pass and the reaper runs as the scheduler would
    time.sleep(2.1)
    later = timezone.now() + timedelta(seconds=services.STALE_START_S + 1)
    services.sandbox_reap(now=later, refill_pool=False)
    call_command("sandbox_reap", "--no-pool")
    # then no container and no live row of that worker remains
    assert runtime.containers_labelled() == []
    assert Sandbox.objects.filter(owner_id="user:killed-worker", state__in=LIVE_STATES).count() == 0
