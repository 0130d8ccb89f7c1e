"""A queued call's audit does not depend on the gateway surviving until its result: the job's own transactions write
`tools/call` (outcome "accepted") when it is stored and `job.finished` (its final outcome) when it ends, whoever ends
it (the worker, the runs sweep, a run's end)."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async

from apps.audit.models import AuditEvent, AuditOutbox
from apps.audit.selectors import audit_chain_verify
from apps.audit.writer import audit_outbox_drain
from apps.gateway.registry import registry
from apps.gateway.tests.inprocess import modern_tool_call
from apps.runs import execution, services
from apps.runs.models import Job
from conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def agent_token(transactional_db, redis_client) -> str:
    from apps.accounts import services as accounts
    from apps.accounts.models import Role, RoleGrant

    accounts.role_catalog_seed()
    role = Role.objects.create(name="audit-runs", description="queued call audit tests", requests_per_minute=600)
    RoleGrant.objects.create(role=role, pattern="test.*")
    RoleGrant.objects.create(role=role, pattern="run.*")
    account = accounts.service_account_ensure(name="audit-agent", roles=["audit-runs"])
    return accounts.api_token_create(name="audit token", service_account=account).value


def _rows(job_id: str) -> list[tuple[str, str, str, str]]:
    """The job's audit rows, once the outbox is empty (the drain thread or this drain moved them into the chain)."""
    wait_for(lambda: audit_outbox_drain() >= 0 and not AuditOutbox.objects.exists(), 10)
    rows = AuditEvent.objects.filter(job_id=job_id).order_by("created_at", "sequence")
    return list(rows.values_list("method", "outcome", "error_code", "tool"))


async def test_an_acknowledged_call_is_audited_with_its_final_outcome_by_the_worker_alone(agent_token):
    # given a queued call the gateway acknowledged (as a task: its request is over, no gateway waits for the result)
    request_id = str(uuid.uuid4())
    answer = await modern_tool_call(agent_token, "test.noop", {"x": 1}, request_id)
    job_id = answer.final()["result"]["task"]["taskId"]
    # when only the worker path completes the job
    await sync_to_async(execution.job_execute)(job_id=job_id)
    # then the call has its acceptance, the gateway's answer (task created) and its final outcome, linked by the job
    # id, in one intact chain (in the order they happened)
    assert await sync_to_async(_rows)(job_id) == [
        ("tools/call", "accepted", "", "test.noop"),
        ("tools/call", "ok", "", "test.noop"),
        ("job.finished", "ok", "", "test.noop"),
    ]
    accepted = await AuditEvent.objects.aget(job_id=job_id, outcome="accepted")
    finished = await AuditEvent.objects.aget(job_id=job_id, method="job.finished")
    assert (accepted.request_id, finished.request_id) == (request_id, request_id)
    assert accepted.principal_id == finished.principal_id != ""
    assert accepted.arguments == '{"x":1}'
    assert accepted.protocol_version == "2026-07-28"
    assert '"state":"succeeded"' in finished.detail
    assert (await sync_to_async(audit_chain_verify)()).ok


def test_a_failed_job_is_audited_with_its_error_code(alice, redis_client):
    # given a queued call whose tool fails permanently
    job = services.job_submit(tool=registry.get("test.permanent"), arguments={"key": "f"}, principal=alice)
    # when the worker runs it
    execution.job_execute(job_id=str(job.pk))
    # then
    assert _rows(str(job.pk)) == [
        ("tools/call", "accepted", "", "test.permanent"),
        ("job.finished", "error", "bad_document", "test.permanent"),
    ]


def test_a_job_the_sweep_ends_is_audited_by_the_sweep(alice, redis_client):
    # given a call of a rerun="never" tool whose worker died mid-job
    job = services.job_submit(tool=registry.get("test.effect_never"), arguments={"key": "s"}, principal=alice)
    services.job_claim(job_id=str(job.pk), worker_id="dead-worker")
    Job.objects.filter(pk=job.pk).update(heartbeat_at=services.timezone.now() - services.timedelta(seconds=60))
    # when the sweep finds it
    services.runs_sweep()
    # then the sweep's transaction recorded its final outcome
    assert _rows(str(job.pk)) == [
        ("tools/call", "accepted", "", "test.effect_never"),
        ("job.finished", "error", "worker_lost", "test.effect_never"),
    ]


def test_the_jobs_a_run_cancel_ends_are_each_audited(alice, redis_client):
    # given a run with two queued jobs, one of them running
    run = services.run_start(principal=alice, name="r", metadata=None, lease_seconds=60)
    jobs = [
        services.job_submit(tool=registry.get("test.noop"), arguments={"n": n}, principal=alice, run_id=str(run.pk))
        for n in (1, 2)
    ]
    services.job_claim(job_id=str(jobs[0].pk), worker_id="A")
    # when the run is cancelled
    services.run_cancel(run_id=str(run.pk), principal=alice)
    # then each job's call has its final row, after the cancel's own
    for job in jobs:
        assert _rows(str(job.pk)) == [
            ("tools/call", "accepted", "", "test.noop"),
            ("job.finished", "error", "cancelled", "test.noop"),
        ]
    assert audit_chain_verify().ok


def test_a_dead_letter_replay_is_audited_as_its_own_call(alice, operator, redis_client):
    # given a job dead-lettered after its retries
    job = services.job_submit(tool=registry.get("test.gated"), arguments={"key": "dl"}, principal=alice)
    for _ in range(3):
        execution.job_execute(job_id=str(job.pk))
    job.refresh_from_db()
    assert job.state == "dead_lettered"
    # when staff replay it
    replayed = services.dead_letter_replay(dead_letter_id=job.dead_letter.pk, principal=operator)
    # then the original call ended audited, and the replay is audited as staff's action and as an accepted call
    assert _rows(str(job.pk)) == [
        ("tools/call", "accepted", "", "test.gated"),
        ("job.finished", "error", "gate_closed", "test.gated"),
    ]
    assert sorted(_rows(str(replayed.pk))) == [
        ("runs.dead_letter_replay", "ok", "", ""),
        ("tools/call", "accepted", "", "test.gated"),
    ]


def test_the_sweep_moves_rows_a_dead_process_left_in_the_outbox(redis_client):
    # given an outbox row a process wrote 60 s ago before it died, and one written just now (its drain is due)
    from apps.audit.writer import AuditRecord, prepare

    def outbox_row(request_id: str) -> AuditOutbox:
        row = prepare(AuditRecord(method="job.finished", outcome="ok", request_id=request_id))
        return AuditOutbox.objects.create(row={**row, "created_at": row["created_at"].isoformat()})

    left = outbox_row("left-behind")
    AuditOutbox.objects.filter(pk=left.pk).update(created_at=services.timezone.now() - services.timedelta(seconds=60))
    fresh = outbox_row("fresh")
    # when the runs sweep runs
    services.runs_sweep()
    # then it moved the left-behind row into the chain and left the fresh one to its process's drain
    assert AuditEvent.objects.filter(request_id="left-behind").count() == 1
    assert list(AuditOutbox.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert audit_outbox_drain() == 1
    assert AuditEvent.objects.filter(request_id="fresh").count() == 1
    assert audit_chain_verify().ok
