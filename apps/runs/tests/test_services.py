from __future__ import annotations

import pytest

from apps.gateway.registry import ToolError, registry
from apps.runs import execution, selectors, services
from apps.runs.models import DeadLetter, Job, JobEvent, JobState, RunEvent


def _submit(principal, tool="test.noop", **kwargs):
    arguments = kwargs.pop("arguments", {"n": 1})
    return services.job_submit(tool=registry.get(tool), arguments=arguments, principal=principal, **kwargs)


@pytest.mark.django_db
def test_submit_creates_a_queued_job_with_the_principal_snapshot(alice):
    # when
    job = _submit(alice, request_id="r1")
    # then
    job.refresh_from_db()
    assert (job.state, job.tool, job.queue, job.attempts, job.request_id) == ("queued", "test.noop", "default", 0, "r1")
    assert job.principal == alice.to_dict()
    assert job.ttl_ms == 3_600_000


@pytest.mark.django_db
def test_same_idempotency_key_and_arguments_return_the_first_job(alice, bob):
    # given
    first = _submit(alice, idempotency_key="k1")
    # when
    again = _submit(alice, idempotency_key="k1")
    other_principal = _submit(bob, idempotency_key="k1")
    # then
    assert again.pk == first.pk
    assert other_principal.pk != first.pk
    assert Job.objects.filter(idempotency_key="k1").count() == 2


@pytest.mark.django_db
def test_same_idempotency_key_with_other_arguments_is_a_conflict(alice):
    # given
    _submit(alice, idempotency_key="k1")
    # when / then
    with pytest.raises(ToolError) as caught:
        _submit(alice, idempotency_key="k1", arguments={"n": 2})
    assert caught.value.code == "idempotency_conflict"
    assert Job.objects.filter(idempotency_key="k1").count() == 1


@pytest.mark.django_db
def test_illegal_transitions_are_refused(alice):
    # given a queued job
    job = _submit(alice)
    # when / then: queued cannot succeed without running
    with pytest.raises(services.JobStateError) as caught:
        services.job_transition(job_id=job.pk, to=JobState.SUCCEEDED)
    assert caught.value.code == "job_state_conflict"
    job.refresh_from_db()
    assert job.state == "queued"


@pytest.mark.django_db
def test_execute_in_process_records_result_and_events(alice):
    # given
    job = _submit(alice, arguments={"x": 1})
    # when
    execution.job_execute(job_id=str(job.pk))
    # then
    job.refresh_from_db()
    assert (job.state, job.attempts, job.result) == ("succeeded", 1, {"echo": {"x": 1}})
    kinds = list(JobEvent.objects.filter(job=job).values_list("seq", "kind"))
    assert kinds == [(1, "state"), (2, "result")]
    assert selectors.job_result(job) == {"ok": True, "result": {"echo": {"x": 1}}}


@pytest.mark.django_db
def test_a_second_delivery_of_a_finished_job_does_nothing(alice):
    # given
    job = _submit(alice)
    execution.job_execute(job_id=str(job.pk))
    # when the message is delivered again
    execution.job_execute(job_id=str(job.pk))
    # then it still completed exactly once
    job.refresh_from_db()
    assert (job.state, job.attempts) == ("succeeded", 1)
    assert JobEvent.objects.filter(job=job, kind="result").count() == 1


@pytest.mark.django_db
def test_a_superseded_claim_cannot_complete_the_job(alice):
    # given a job claimed by worker A, then requeued as lost and claimed by worker B
    job = _submit(alice)
    services.job_claim(job_id=str(job.pk), worker_id="A")
    with services.transaction.atomic():
        services._recover_lost(Job.objects.select_for_update().get(pk=job.pk))
    services.job_claim(job_id=str(job.pk), worker_id="B")
    # when A finishes late
    late = services.job_succeed(job_id=str(job.pk), claim="A", result={"from": "A"})
    done = services.job_succeed(job_id=str(job.pk), claim="B", result={"from": "B"})
    # then only B's result counts
    assert late is None
    job.refresh_from_db()
    assert (job.state, job.result, job.attempts, job.lost_count) == ("succeeded", {"from": "B"}, 2, 1)
    assert done is not None


@pytest.mark.django_db
def test_permanent_error_fails_at_once(alice, redis_client):
    # given
    job = _submit(alice, tool="test.permanent", arguments={"key": "p"})
    # when
    execution.job_execute(job_id=str(job.pk))
    # then
    job.refresh_from_db()
    assert (job.state, job.attempts) == ("failed", 1)
    assert job.error == {
        "code": "bad_document",
        "message": "the document is not valid UTF-8",
        "data": {"field": "document"},
        "retryable": False,
    }
    assert not DeadLetter.objects.exists()


@pytest.mark.django_db
def test_retryable_error_schedules_a_retry_then_dead_letters(alice, redis_client, settings):
    # given a tool with max_retries=2 that always fails retryably
    job = _submit(alice, tool="test.gated", arguments={"key": "g"})
    # when it is executed three times (the retries' messages are not delivered in this test)
    states = []
    for _ in range(3):
        execution.job_execute(job_id=str(job.pk))
        job.refresh_from_db()
        states.append(job.state)
    # then
    assert states == ["retrying", "retrying", "dead_lettered"]
    letter = DeadLetter.objects.get(job=job)
    assert (letter.attempts, letter.error["code"]) == (3, "gate_closed")


def test_retry_delay_grows_exponentially_with_jitter(settings):
    # given
    settings.RUNS_RETRY_BASE_MS = 1000
    settings.RUNS_RETRY_MAX_MS = 5000
    # when
    delays = {attempt: [services.retry_delay_ms(attempt) for _ in range(200)] for attempt in (1, 2, 3, 4)}
    # then: each in [ceiling/2, ceiling], capped
    for attempt, ceiling in ((1, 1000), (2, 2000), (3, 4000), (4, 5000)):
        assert ceiling / 2 <= min(delays[attempt]) <= max(delays[attempt]) <= ceiling
        assert len(set(delays[attempt])) > 50


@pytest.mark.django_db
def test_cancel_a_queued_job_and_cancelling_again_is_a_no_op(alice):
    # given
    job = _submit(alice)
    # when
    cancelled = services.job_cancel(job_id=job.pk, principal=alice, reason="changed my mind")
    again = services.job_cancel(job_id=job.pk, principal=alice, reason="twice")
    # then
    assert (cancelled.state, cancelled.cancel_was_noop) == ("cancelled", False)
    assert (again.state, again.cancel_was_noop, again.cancel_reason) == ("cancelled", True, "changed my mind")
    assert selectors.job_result(again)["error"]["code"] == "cancelled"


@pytest.mark.django_db
def test_cancelling_a_finished_job_is_a_no_op(alice):
    # given
    job = _submit(alice)
    execution.job_execute(job_id=str(job.pk))
    # when
    result = services.job_cancel(job_id=job.pk, principal=alice)
    # then
    assert (result.state, result.cancel_was_noop) == ("succeeded", True)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("_case", "who", "visible"),
    [("owner", "alice", True), ("someone else", "bob", False), ("operator", "operator", True)],
)
def test_job_visibility(_case, who, visible, alice, request):
    # given
    job = _submit(alice)
    principal = request.getfixturevalue(who)
    # when / then
    if visible:
        assert selectors.job_get(str(job.pk), principal).pk == job.pk
    else:
        with pytest.raises(ToolError) as caught:
            selectors.job_get(str(job.pk), principal)
        assert caught.value.code == "job_not_found"
        with pytest.raises(ToolError):
            services.job_cancel(job_id=job.pk, principal=principal)
        job.refresh_from_db()
        assert job.state == "queued"


@pytest.mark.django_db
@pytest.mark.parametrize("job_id", ["nope", "00000000-0000-0000-0000-000000000000", ""])
def test_unknown_job_ids_are_not_found(job_id, alice):
    with pytest.raises(ToolError) as caught:
        selectors.job_get(job_id, alice)
    assert caught.value.code == "job_not_found"


@pytest.mark.django_db
def test_jobs_attached_to_a_run_log_gap_free_run_events(alice):
    # given a run and two jobs in it
    run = services.run_start(principal=alice, name="r", metadata={"a": 1}, lease_seconds=60)
    first = _submit(alice, run_id=str(run.pk))
    second = _submit(alice, run_id=str(run.pk))
    # when they run
    execution.job_execute(job_id=str(first.pk))
    execution.job_execute(job_id=str(second.pk))
    # then the run log is in order with no gaps
    log = list(RunEvent.objects.filter(run=run).values_list("seq", "kind", "job_id"))
    assert log == [
        (1, "run.started", None),
        (2, "job.submitted", first.pk),
        (3, "job.submitted", second.pk),
        (4, "job.state", first.pk),
        (5, "job.result", first.pk),
        (6, "job.state", second.pk),
        (7, "job.result", second.pk),
    ]
    assert [e.seq for e in selectors.run_events(run.pk, after_seq=5)] == [6, 7]
    assert selectors.run_events(run.pk, after_seq=99) == []


@pytest.mark.django_db
def test_run_cancel_cancels_its_in_flight_jobs_only(alice):
    # given
    run = services.run_start(principal=alice, name="r", metadata=None, lease_seconds=60)
    done = _submit(alice, run_id=str(run.pk))
    execution.job_execute(job_id=str(done.pk))
    pending = _submit(alice, run_id=str(run.pk))
    # when
    run, cancelled = services.run_cancel(run_id=str(run.pk), principal=alice)
    again, none = services.run_cancel(run_id=str(run.pk), principal=alice)
    # then
    assert [j.pk for j in cancelled] == [pending.pk]
    assert (run.state, again.state, none) == ("cancelled", "cancelled", [])
    done.refresh_from_db()
    assert done.state == "succeeded"
    with pytest.raises(ToolError) as caught:
        _submit(alice, run_id=str(run.pk))
    assert caught.value.code == "run_not_active"


@pytest.mark.django_db
def test_expired_lease_cancels_jobs_and_heartbeat_then_says_expired(alice):
    # given a run whose lease has run out
    run = services.run_start(principal=alice, name="r", metadata=None, lease_seconds=60)
    job = _submit(alice, run_id=str(run.pk))
    type(run).objects.filter(pk=run.pk).update(lease_expires_at=services.timezone.now())
    # when the sweep runs
    outcome = services.runs_sweep()
    # then
    assert outcome == {"recovered_jobs": [], "expired_runs": [str(run.pk)], "resent_jobs": []}
    job.refresh_from_db()
    assert (job.state, job.cancel_reason) == ("cancelled", "run lease expired")
    with pytest.raises(ToolError) as caught:
        services.run_heartbeat(run_id=str(run.pk), principal=alice)
    assert caught.value.code == "run_expired"


@pytest.mark.django_db
def test_heartbeat_renews_the_lease(alice):
    # given
    run = services.run_start(principal=alice, name="r", metadata=None, lease_seconds=30)
    before = run.lease_expires_at
    # when
    renewed = services.run_heartbeat(run_id=str(run.pk), principal=alice)
    # then
    assert renewed.lease_expires_at > before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("_case", "kwargs", "message"),
    [
        ("empty name", {"name": " ", "lease_seconds": 60}, "name: give 1-200 characters"),
        ("short lease", {"name": "r", "lease_seconds": 1}, "lease_seconds: give a whole number from 5 to 604800"),
    ],
)
def test_run_start_rejects_bad_input(_case, kwargs, message, alice):
    with pytest.raises(ToolError) as caught:
        services.run_start(principal=alice, metadata=None, **kwargs)
    assert (caught.value.code, caught.value.message) == ("invalid_params", message)


@pytest.mark.django_db
def test_stale_running_job_is_requeued_by_the_sweep(alice, settings):
    # given a job whose worker stopped heartbeating
    job = _submit(alice)
    services.job_claim(job_id=str(job.pk), worker_id="dead-worker")
    Job.objects.filter(pk=job.pk).update(heartbeat_at=services.timezone.now() - services.timedelta(seconds=60))
    # when
    outcome = services.runs_sweep()
    # then
    assert outcome["recovered_jobs"] == [str(job.pk)]
    job.refresh_from_db()
    assert (job.state, job.lost_count, job.error["code"]) == ("retrying", 1, "worker_lost")


@pytest.mark.django_db
def test_the_sweep_resends_messages_of_jobs_left_waiting(alice, settings, redis_client):
    # given a queued job whose message was lost long ago, a fresh one, and a retry overdue
    settings.RUNS_RESEND_AFTER_S = 60
    old = services.timezone.now() - services.timedelta(seconds=300)
    lost = _submit(alice, arguments={"n": 1})
    fresh = _submit(alice, arguments={"n": 2})
    overdue = _submit(alice, tool="test.gated", arguments={"key": "o"})
    execution.job_execute(job_id=str(overdue.pk))
    Job.objects.filter(pk__in=[lost.pk, overdue.pk]).update(last_sent_at=old, next_attempt_at=old)
    redis_client.flushdb()
    # when
    resent = services.job_resend_stalled()
    again = services.job_resend_stalled()
    # then each stalled job got one new message, and not again at the next sweep
    assert sorted(resent) == sorted([str(lost.pk), str(overdue.pk)])
    assert again == []
    assert redis_client.hlen("dramatiq:default.msgs") == 2
    fresh.refresh_from_db()
    assert fresh.state == "queued"


@pytest.mark.django_db
def test_a_message_that_could_not_be_sent_is_resent_by_the_next_sweep(
    alice, settings, redis_client, monkeypatch, django_capture_on_commit_callbacks
):
    # given a broker that refuses the message when the job is submitted (a fake only for the error)
    import dramatiq
    import redis

    settings.RUNS_RESEND_AFTER_S = 120
    broker = dramatiq.get_broker()

    def refuse(message, *, delay=None):
        raise redis.ConnectionError("fake: Error 111 connecting to redis.sock")

    monkeypatch.setattr(broker, "enqueue", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        job = _submit(alice)
    monkeypatch.undo()
    # when the broker is back and the next sweep runs (well within RUNS_RESEND_AFTER_S)
    resent = services.job_resend_stalled()
    # then the job's message is sent now, once
    assert resent == [str(job.pk)]
    assert services.job_resend_stalled() == []
    assert redis_client.hlen("dramatiq:default.msgs") == 1


@pytest.mark.django_db(transaction=True)
def test_a_delivery_that_lost_the_database_is_delivered_again_shortly(alice, redis_client):
    # given a queued job, and a database connection that breaks at the next query (a fake only for the error)
    from django.db import OperationalError, connection

    from apps.runs.actors import job_execute_actor

    job = _submit(alice)
    redis_client.flushdb()
    broken = []

    def postmaster_gone(execute, sql, params, many, context):
        if not broken:
            broken.append(sql)
            raise OperationalError("fake: terminating connection due to unexpected postmaster exit")
        return execute(sql, params, many, context)

    # when its delivery runs
    with connection.execute_wrapper(postmaster_gone):
        job_execute_actor("default").fn(str(job.pk))
    # then the job is untouched and its message is on the delay queue, to be delivered again in 2 s
    job.refresh_from_db()
    assert (job.state, job.attempts) == ("queued", 0)
    assert broken
    assert redis_client.hlen("dramatiq:default.DQ.msgs") == 1
