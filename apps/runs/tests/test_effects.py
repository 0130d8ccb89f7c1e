"""Effects at most once: what happens to a job whose worker died mid-job depends on its tool's `rerun` policy, and
the progress it publishes only ever increases, across attempts."""

from __future__ import annotations

import pytest

from apps.gateway.registry import registry
from apps.runs import events, execution, services
from apps.runs.models import Job, JobEvent

pytestmark = pytest.mark.django_db


def _lost_mid_job(principal, tool: str, arguments: dict) -> Job:
    """A job whose first attempt started on a worker that then died (its heartbeat went stale)."""
    job = services.job_submit(tool=registry.get(tool), arguments=arguments, principal=principal)
    assert services.job_claim(job_id=str(job.pk), worker_id="dead-worker") is not None
    Job.objects.filter(pk=job.pk).update(heartbeat_at=services.timezone.now() - services.timedelta(seconds=60))
    return job


def test_a_never_tool_whose_worker_died_fails_worker_lost_without_running_again(alice, redis_client):
    # given a job of a rerun="never" tool whose worker died mid-job
    job = _lost_mid_job(alice, "test.effect_never", {"key": "never"})
    # when the sweep finds it, and its message is delivered again
    assert services.runs_sweep()["recovered_jobs"] == [str(job.pk)]
    execution.job_execute(job_id=str(job.pk))
    # then it failed with worker_lost and its handler never ran a second time
    job.refresh_from_db()
    assert (job.state, job.attempts, job.lost_count, job.lost_attempt) == ("failed", 1, 1, 1)
    assert job.error["code"] == "worker_lost"
    assert job.error["retryable"] is False
    assert "not safe to run twice" in job.error["message"]
    assert redis_client.get("never:runs") is None
    assert list(JobEvent.objects.filter(job=job).values_list("kind", flat=True)) == ["state", "error"]


def test_a_never_tool_redelivered_by_the_broker_fails_worker_lost(alice, redis_client):
    # given a job of a rerun="never" tool whose worker died; the broker redelivers its message before any sweep
    job = _lost_mid_job(alice, "test.effect_never", {"key": "redelivered"})
    # when the redelivered message reaches a live worker
    execution.job_execute(job_id=str(job.pk))
    # then the claim finds the worker lost and fails the job instead of running it
    job.refresh_from_db()
    assert (job.state, job.error["code"], job.attempts) == ("failed", "worker_lost", 1)
    assert redis_client.get("redelivered:runs") is None


def test_a_safe_tool_whose_worker_died_runs_again(alice, redis_client):
    # given a job of a rerun="safe" tool whose worker died mid-job
    job = _lost_mid_job(alice, "test.effect_safe", {"key": "safe"})
    # when the sweep requeues it and a worker runs the retry
    services.runs_sweep()
    execution.job_execute(job_id=str(job.pk))
    # then it ran again from the start, as a plain retry
    job.refresh_from_db()
    assert (job.state, job.attempts, job.lost_count) == ("succeeded", 2, 1)
    assert job.result == {"runs": 1, "attempt": 2, "lost_attempt": None}


def test_an_adopt_tool_retry_is_told_which_attempt_it_adopts(alice, redis_client):
    # given a job of a rerun="adopt" tool whose worker died during attempt 1
    job = _lost_mid_job(alice, "test.effect_adopt", {"key": "adopt"})
    # when it is retried
    services.runs_sweep()
    execution.job_execute(job_id=str(job.pk))
    # then the retry's context names the lost attempt (the hook its handler adopts from)
    job.refresh_from_db()
    assert (job.state, job.attempts) == ("succeeded", 2)
    assert job.result == {"runs": 1, "attempt": 2, "lost_attempt": 1}


def test_a_failed_attempt_is_not_offered_for_adoption(alice, redis_client):
    # given an adopt tool whose attempt 1 lost its worker and attempt 2 failed retryably (not lost)
    job = _lost_mid_job(alice, "test.effect_adopt", {"key": "adopt2"})
    services.runs_sweep()
    claimed = services.job_claim(job_id=str(job.pk), worker_id="B")
    Job.objects.filter(pk=job.pk).update(max_retries=2)
    services.job_fail(job_id=str(job.pk), claim="B", error={"code": "x", "message": "x"}, retryable=True)
    # when attempt 3 runs
    execution.job_execute(job_id=str(job.pk))
    # then it adopts nothing: the attempt before it was not lost
    job.refresh_from_db()
    assert claimed is not None
    assert (job.state, job.attempts, job.result["lost_attempt"]) == ("succeeded", 3, None)


def test_progress_across_a_lost_attempt_and_its_retry_only_increases(alice, redis_client):
    # given a job whose first attempt published progress 1..5 of 8, then lost its worker
    job = _lost_mid_job(alice, "test.slow", {"key": "mono", "steps": 8, "step_s": 0})
    for step in range(1, 6):
        assert isinstance(events.job_event_emit(job_id=job.pk, kind="progress", payload={"progress": step}), JobEvent)
    services.runs_sweep()
    # when the retry runs from the start, reporting 1..8 again
    execution.job_execute(job_id=str(job.pk))
    # then the published progress is 1..8 once each, strictly increasing, and the retry's 1..5 were not published
    job.refresh_from_db()
    published = [e.payload["progress"] for e in JobEvent.objects.filter(job=job, kind="progress").order_by("seq")]
    assert published == [1, 2, 3, 4, 5, 6, 7, 8]
    assert (job.state, job.attempts, job.progress_high) == ("succeeded", 2, 8)
    assert list(JobEvent.objects.filter(job=job).values_list("seq", flat=True)) == list(
        range(1, job.last_event_seq + 1)
    )


def test_progress_at_or_below_the_mark_is_not_published_and_does_not_look_like_an_ended_job(alice):
    # given a running job that published 3
    job = services.job_submit(tool=registry.get("test.slow"), arguments={"key": "m"}, principal=alice)
    services.job_claim(job_id=str(job.pk), worker_id="A")
    events.job_event_emit(job_id=job.pk, kind="progress", payload={"progress": 3})
    # when it reports 3 again, then 2, then 4
    again = events.job_event_emit(job_id=job.pk, kind="progress", payload={"progress": 3})
    lower = events.job_event_emit(job_id=job.pk, kind="progress", payload={"progress": 2})
    higher = events.job_event_emit(job_id=job.pk, kind="progress", payload={"progress": 4})
    # then only 4 is written; the others are skipped, not "job ended" (which would cancel the handler)
    assert again == lower == events.BELOW_HIGH_WATER
    assert isinstance(higher, JobEvent)
    assert [e.payload["progress"] for e in JobEvent.objects.filter(job=job, kind="progress")] == [3, 4]
