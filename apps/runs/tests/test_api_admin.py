from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django_otp.oath import totp

from apps.accounts.otp import otp_device_create
from apps.audit.models import AuditEvent
from apps.gateway.registry import registry
from apps.runs import execution, services
from apps.runs.models import DeadLetter, Job

pytestmark = pytest.mark.django_db


def _job(principal, tool="test.noop", arguments=None):
    return services.job_submit(tool=registry.get(tool), arguments=arguments or {}, principal=principal)


def _user(name, *, staff):
    return get_user_model().objects.create_user(name, f"{name}@example.com", "a-long-password-1", is_staff=staff)


@pytest.mark.parametrize(
    ("_case", "who", "status"),
    [("anonymous", None, 403), ("not staff", "member", 403), ("staff", "staffer", 200)],
)
def test_rest_cancel_is_for_staff_only(_case, who, status, client, alice, django_capture_on_commit_callbacks):
    # given
    job = _job(alice)
    user = _user(who, staff=who == "staffer") if who else None
    if user:
        client.force_login(user)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/jobs/{job.pk}/cancel", {"reason": "ops"}, content_type="application/json")
    # then
    assert response.status_code == status
    job.refresh_from_db()
    assert job.state == ("cancelled" if status == 200 else "queued")
    if status == 200:
        assert response.json() == {"id": str(job.pk), "state": "cancelled", "cancelled": True, "detail": "cancelled"}
        assert job.cancel_reason == "ops"
    audited = list(AuditEvent.objects.filter(method="runs.job_cancel").values_list("principal_id", "job_id"))
    assert audited == ([(f"user:{user.pk}", str(job.pk))] if status == 200 else [])


def test_rest_cancel_of_a_finished_job_is_a_no_op(client, alice):
    # given
    job = _job(alice)
    execution.job_execute(job_id=str(job.pk))
    client.force_login(_user("staffer", staff=True))
    # when
    response = client.post(f"/api/jobs/{job.pk}/cancel", content_type="application/json")
    # then
    assert response.status_code == 200
    assert response.json() == {
        "id": str(job.pk),
        "state": "succeeded",
        "cancelled": False,
        "detail": "job already succeeded; nothing changed",
    }


@pytest.mark.parametrize("job_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_rest_cancel_of_an_unknown_job_is_404(job_id, client):
    client.force_login(_user("staffer", staff=True))
    response = client.post(f"/api/jobs/{job_id}/cancel", content_type="application/json")
    assert response.status_code == 404
    assert response.json()["code"] == "job_not_found"


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "r@example.com", "a-long-password-1")
    otp_device_create(user=user, totp=True)
    device = user.totpdevice_set.get()
    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"
    client.post(
        "/admin/login/?next=/admin/",
        {"username": "root", "password": "a-long-password-1", "otp_device": device.persistent_id, "otp_token": code},
    )
    return client


def test_admin_lists_and_shows_jobs_runs_and_dead_letters(admin_client, alice):
    # given a run with a finished job, and a dead letter
    run = services.run_start(principal=alice, name="nightly", metadata=None, lease_seconds=60)
    job = services.job_submit(tool=registry.get("test.noop"), arguments={}, principal=alice, run_id=str(run.pk))
    execution.job_execute(job_id=str(job.pk))
    # when / then every page renders, with the events inline
    for url in (
        "/admin/runs/job/?state__exact=succeeded",
        f"/admin/runs/job/{job.pk}/change/",
        "/admin/runs/run/",
        f"/admin/runs/run/{run.pk}/change/",
        "/admin/runs/deadletter/",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
    assert b"job.result" in admin_client.get(f"/admin/runs/run/{run.pk}/change/").content


def test_admin_cancel_action_and_dead_letter_replay(admin_client, alice, redis_client):
    # given a queued job and a dead-lettered one
    queued = _job(alice)
    dead = _job(alice, "test.gated", {"key": "adm"})
    for _ in range(3):
        execution.job_execute(job_id=str(dead.pk))
    letter = DeadLetter.objects.get(job=dead)
    # when the staff member cancels and replays
    admin_client.post("/admin/runs/job/", {"action": "cancel_jobs", "_selected_action": [str(queued.pk), str(dead.pk)]})
    admin_client.post("/admin/runs/deadletter/", {"action": "replay", "_selected_action": [str(letter.pk)]})
    # then
    queued.refresh_from_db()
    letter.refresh_from_db()
    assert queued.state == "cancelled"
    assert queued.cancel_reason == "cancelled in the admin by root"
    assert Job.objects.get(pk=dead.pk).state == "dead_lettered"
    assert letter.replayed_job.replay_of_id == dead.pk
    assert letter.replayed_job.state == "queued"
