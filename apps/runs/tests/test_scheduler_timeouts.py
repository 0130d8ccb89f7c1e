from __future__ import annotations

import threading
import time

import pytest

from apps.gateway.registry import registry
from apps.runs import execution, scheduler, services
from apps.runs.models import JobEvent
from conftest import wait_for


@pytest.mark.django_db
def test_a_job_over_its_time_limit_ends_timed_out_and_is_not_retried(alice, settings):
    # given a tool limited to 0.5 s that would sleep 10 s
    settings.RUNS_CANCEL_POLL_MS = 50
    job = services.job_submit(tool=registry.get("test.sleepy"), arguments={}, principal=alice)
    # when it runs
    started = time.monotonic()
    execution.job_execute(job_id=str(job.pk))
    took = time.monotonic() - started
    # then it was stopped at its limit and recorded as timed out
    job.refresh_from_db()
    assert (job.state, job.attempts, job.result) == ("timed_out", 1, None)
    assert job.error["code"] == "timeout"
    assert took < 2
    assert JobEvent.objects.filter(job=job).last().payload["code"] == "timeout"


def test_the_scheduler_sends_due_actors_and_a_second_one_stands_by(redis_client, monkeypatch):
    # given a schedule with one fast periodic entry
    sent: list[str] = []
    monkeypatch.setattr(scheduler, "SCHEDULE", {"tick": scheduler.Periodic("tick", 0.2, lambda: sent.append("tick"))})
    stop_first, stop_second = threading.Event(), threading.Event()
    first = threading.Thread(target=scheduler.run_forever, args=(stop_first,), kwargs={"tick_s": 0.05})
    first.start()
    wait_for(lambda: sent, 5)
    # when a second scheduler starts while the first leads
    second = threading.Thread(target=scheduler.run_forever, args=(stop_second,), kwargs={"tick_s": 0.05})
    second.start()
    time.sleep(1.0)
    stop_first.set()
    first.join(5)
    stop_second.set()
    second.join(5)
    # then only one of them sent: about one message per period, never two per period
    assert 4 <= len(sent) <= 7, sent
    assert redis_client.get(scheduler.LEADER_KEY) is None


def test_the_scheduler_command_loads_every_apps_periodic_actors():
    # when
    schedule = scheduler.load_schedule()
    # then the one table's rows are registered with their periods
    assert schedule["runs_sweep"].every_s == 1.0
    assert schedule["sandbox_reap"].every_s == 30
    assert schedule["browser_sessions_reap"].every_s == 60
    assert schedule["audit_digest"].every_s == 3600
