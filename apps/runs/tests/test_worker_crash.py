"""A worker killed with SIGKILL mid-job: the job is detected as lost, rerun elsewhere, and completes once."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from apps.gateway.registry import registry
from apps.runs import scheduler, services
from apps.runs.models import JobEvent
from conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_worker_killed_mid_job_completes_exactly_once(alice, redis_client, job_worker, settings, monkeypatch):
    # given two workers (default + maintenance queues), the scheduler loop (the runs sweep only), and a job running
    # on one worker
    settings.RUNS_SCHEDULER_TICK_S = 0.5
    monkeypatch.setattr(scheduler, "SCHEDULE", {"runs_sweep": scheduler.load_schedule()["runs_sweep"]})
    job_worker("default", "maintenance")
    job_worker("default", "maintenance")
    stop = threading.Event()
    clock = threading.Thread(target=scheduler.run_forever, args=(stop,), daemon=True)
    clock.start()
    try:
        job = services.job_submit(
            tool=registry.get("test.slow"), arguments={"key": "k1", "steps": 40, "step_s": 0.1}, principal=alice
        )
        wait_for(lambda: redis_client.llen("k1:starts") == 1, 60)
        victim_pid = int(redis_client.lindex("k1:starts", 0))
        # when that worker is killed with SIGKILL mid-job
        os.killpg(os.getpgid(victim_pid), signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: redis_client.llen("k1:starts") == 2, 30)
        detected_after = time.monotonic() - killed_at
        wait_for(lambda: services.Job.objects.get(pk=job.pk).is_terminal, 60)
        time.sleep(0.5)
        # then the surviving worker reran it, and it completed exactly once
        job.refresh_from_db()
        assert (job.state, job.attempts, job.lost_count) == ("succeeded", 2, 1)
        assert int(redis_client.lindex("k1:starts", 1)) != victim_pid
        assert JobEvent.objects.filter(job=job, kind="result").count() == 1
        assert redis_client.get("k1:completions") == b"1"
        # and the progress both attempts published only ever increased (the retry restarted at step 1)
        published = [e.payload["progress"] for e in JobEvent.objects.filter(job=job, kind="progress").order_by("seq")]
        assert published == sorted(set(published))
        assert published[-1] == 40
        # detection is bounded by RUNS_JOB_STALE_S (2 s here) + the sweep period (0.5 s) + a delivery
        assert detected_after < 8, detected_after
        print(f"\nworker loss detected and the job restarted {detected_after:.2f} s after SIGKILL")
    finally:
        stop.set()
        clock.join(5)
