"""End to end with a real Redis broker and real `rundramatiq` worker processes."""

from __future__ import annotations

import asyncio
import time

import pytest

from apps.gateway.registry import registry
from apps.runs import services, streams
from apps.runs.models import DeadLetter, JobEvent, RunEvent
from conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _submit(principal, tool, arguments, **kwargs):
    return services.job_submit(tool=registry.get(tool), arguments=arguments, principal=principal, **kwargs)


def _state(job):
    job.refresh_from_db()
    return job.state


def _terminal(job, timeout=60.0):
    return wait_for(lambda: _state(job) in {"succeeded", "failed", "cancelled", "timed_out", "dead_lettered"}, timeout)


async def _collect(job_id, after=None):
    return [(e.seq, e.kind, e.payload) async for e in streams.job_events(str(job_id), after=after)]


def test_queued_job_streams_progress_then_result(alice, redis_client, shared_worker):
    # given a worker and a job reporting progress
    job = _submit(alice, "test.slow", {"key": "s1", "steps": 3, "step_s": 0.01})
    # when the gateway side follows its events
    events = asyncio.run(asyncio.wait_for(_collect(job.pk), 30))
    # then every event arrives in order, ending with the result
    assert [(seq, kind) for seq, kind, _ in events] == [
        (1, "state"),
        (2, "progress"),
        (3, "progress"),
        (4, "progress"),
        (5, "result"),
    ]
    assert events[1][2] == {"progress": 1, "total": 3, "message": "step 1"}
    assert events[4][2] == {"state": "succeeded", "result": {"steps": 3}}
    # and resuming after event 3 gives exactly the rest, from Redis or from Postgres
    assert [seq for seq, _, _ in asyncio.run(_collect(job.pk, after="3"))] == [4, 5]
    redis_client.flushdb()  # Redis lost: Postgres still has everything
    assert [seq for seq, _, _ in asyncio.run(_collect(job.pk, after="1"))] == [2, 3, 4, 5]


def test_retry_then_success(alice, redis_client, shared_worker):
    # given a tool failing retryably on attempts 1 and 2
    job = _submit(alice, "test.flaky", {"key": "f1", "succeed_on": 3})
    # when
    _terminal(job)
    # then
    assert (job.state, job.attempts, job.result) == ("succeeded", 3, {"attempt": 3})
    assert redis_client.lrange("f1:attempts", 0, -1) == [b"1", b"2", b"3"]
    states = [e.payload["state"] for e in JobEvent.objects.filter(job=job, kind__in=["state", "result"])]
    assert states == ["running", "retrying", "running", "retrying", "running", "succeeded"]


def test_permanent_failure_is_not_retried(alice, redis_client, shared_worker):
    # given
    job = _submit(alice, "test.permanent", {"key": "p1"})
    # when
    _terminal(job)
    time.sleep(0.3)
    # then
    assert (job.state, job.attempts, job.error["code"]) == ("failed", 1, "bad_document")
    assert redis_client.get("p1:calls") == b"1"


def test_dead_letter_then_replay_succeeds(alice, operator, redis_client, shared_worker):
    # given a tool (max_retries=2) whose upstream stays down
    job = _submit(alice, "test.gated", {"key": "g1"})
    _terminal(job)
    assert (job.state, job.attempts) == ("dead_lettered", 3)
    letter = DeadLetter.objects.get(job=job)
    # when the upstream is back and an operator replays the dead letter
    redis_client.set("g1:open", "1")
    replay = services.dead_letter_replay(dead_letter_id=letter.pk, principal=operator)
    _terminal(replay)
    # then the replay succeeded, the original stays dead-lettered
    assert (replay.state, replay.result, replay.replay_of_id) == ("succeeded", {"passed": True}, job.pk)
    assert _state(job) == "dead_lettered"
    assert redis_client.get("g1:calls") == b"4"
    letter.refresh_from_db()
    assert letter.replayed_job_id == replay.pk


def test_cancel_while_running_stops_within_a_second(alice, redis_client, shared_worker):
    # given a long job that is running
    job = _submit(alice, "test.slow", {"key": "c1", "steps": 200, "step_s": 0.1})
    wait_for(lambda: redis_client.llen("c1:starts") == 1, 60)
    # when it is cancelled
    requested = time.time()
    services.job_cancel(job_id=job.pk, principal=alice, reason="user pressed stop")
    # then the handler stopped within a second and the job ends cancelled, with no result recorded
    stopped_at = float(wait_for(lambda: redis_client.get("c1:stopped_at"), 5))
    assert stopped_at - requested < 1.0
    time.sleep(0.3)
    job.refresh_from_db()
    assert (job.state, job.result, job.cancel_reason) == ("cancelled", None, "user pressed stop")
    assert redis_client.get("c1:completions") is None
    assert JobEvent.objects.filter(job=job).last().kind == "cancelled"


def test_run_resume_returns_every_event_after_the_cursor(alice, redis_client, shared_worker):
    # given a run with two jobs that ran on a worker
    run = services.run_start(principal=alice, name="resume", metadata=None, lease_seconds=60)
    jobs = [_submit(alice, "test.slow", {"key": f"r{i}", "steps": 2, "step_s": 0}, run_id=str(run.pk)) for i in (1, 2)]
    for job in jobs:
        _terminal(job)
    from apps.runs.tools import run_resume

    class Ctx:
        principal = alice

    # when a client resumes from seq 4
    whole = run_resume(Ctx(), {"run_id": str(run.pk), "after_seq": 0})
    tail = run_resume(Ctx(), {"run_id": str(run.pk), "after_seq": 4})
    beyond = run_resume(Ctx(), {"run_id": str(run.pk), "after_seq": 500})
    # then there are no gaps nor duplicates, and a cursor beyond the end is an empty page
    seqs = [e["seq"] for e in whole["events"]]
    assert seqs == list(range(1, RunEvent.objects.filter(run=run).count() + 1))
    assert len(seqs) == 1 + 2 + 2 * 4  # started, 2 submitted, per job: running, 2 progress, result
    assert [e["seq"] for e in tail["events"]] == seqs[4:]
    assert (beyond["events"], beyond["more"], beyond["run"]["state"]) == ([], False, "active")
