from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from apps.accounts.principal import Principal
from apps.audit.models import AuditEvent
from apps.runs import services as runs_services
from apps.runs.models import Job, JobState
from apps.support.tests.conftest import record

AUDIT = "/support/audit/"


def _body(response) -> str:
    """A streamed (async iterator) response's whole body, consumed as the ASGI handler would."""

    async def consume() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(consume)().decode()


def _sequences(response) -> list[int]:
    return [e.sequence for e in response.context["page"].events]


# ------------------------------------------------------------------------------------------------ access


@pytest.mark.parametrize(
    ("kind", "status"),
    [("anonymous", 302), ("no_otp", 302), ("plain", 403), ("support", 200), ("staff", 200)],
)
@pytest.mark.parametrize("path", [AUDIT, "/support/audit/chain/", "/support/runs/", "/support/audit/export.csv"])
def test_pages_need_a_verified_support_or_staff_user(client_for, kind, status, path):
    # given
    client = client_for(kind)
    # when
    response = client.get(path)
    # then
    assert response.status_code == status
    if status == 302:
        assert response["Location"].startswith("/support/login/?next=")
    if status == 403:
        assert "to bind the role to you" in response.content.decode()


def test_login_needs_password_and_one_time_code(db, users):
    # given
    from django.test import Client

    from apps.support.tests.conftest import PASSWORD

    users["support"].staticdevice_set.get().token_set.create(token="12345678")
    client = Client()
    # when: the password alone
    refused = client.post("/support/login/", {"username": "sam-support", "password": PASSWORD, "otp_token": ""})
    # then
    assert refused.status_code == 200
    assert "_auth_user_id" not in client.session
    # when: password and a code
    accepted = client.post(
        "/support/login/?next=/support/runs/",
        {"username": "sam-support", "password": PASSWORD, "otp_token": "12345678", "next": "/support/runs/"},
    )
    # then
    assert accepted.status_code == 302
    assert accepted["Location"] == "/support/runs/"
    assert client.get("/support/runs/").status_code == 200


# ----------------------------------------------------------------------------------------------- filters


@pytest.fixture
def mixed_events(users):
    now = timezone.now()
    return {
        "a": record(principal_id="service:1", tool="task.list", arguments={"query": "needle-in-args"}, latency_ms=5),
        "b": record(principal_id="service:2", tool="task.create", outcome="denied", error_code="forbidden"),
        "c": record(
            principal_id="service:1", tool="memory.search", outcome="error", error_code="timeout", latency_ms=90
        ),
        "d": record(
            principal_id="user:9", identity_source="oauth", tool="task.list", request_id="req-777", latency_ms=40
        ),
        "now": now,
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("principal=service:1", ["c", "a"]),
        ("tool=task.list", ["d", "a"]),
        ("outcome=denied", ["b"]),
        ("error_code=timeout", ["c"]),
        ("identity_source=oauth", ["d"]),
        ("q=needle-in", ["a"]),
        ("q=req-777", ["d"]),
        ("principal=service:1&outcome=ok", ["a"]),
        ("sort=oldest&tool=task.list", ["a", "d"]),
        ("sort=slowest", ["c", "d", "a"]),
    ],
)
def test_audit_filters(client_for, mixed_events, query, expected):
    # given
    client = client_for("support")
    # when
    response = client.get(f"{AUDIT}?{query}")
    # then
    assert response.status_code == 200
    assert _sequences(response) == [mixed_events[k].sequence for k in expected]


def test_audit_time_range(client_for, mixed_events):
    # given
    client = client_for("support")
    since = (mixed_events["now"] - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    past = (mixed_events["now"] - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    # when
    recent = client.get(AUDIT, {"since": since})
    old = client.get(AUDIT, {"since": past, "until": since})
    # then
    assert len(_sequences(recent)) == 4
    assert _sequences(old) == []
    assert "No audit events match this filter." in old.content.decode()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"outcome": "great"}, "Select a valid choice"),
        ({"since": "2026-05-02T10:00", "until": "2026-05-01T10:00"}, "must be later than"),
        ({"since": "1900-01-01T00:00"}, "between 2000-01-01 and 2100-01-01"),
        ({"until": "99999-01-01"}, "Enter a valid date/time"),
        ({"q": "ab"}, "at least 3 characters"),
        ({"principal": "x" * 500}, "at most 200 characters"),
        ({"limit": "100000"}, "Select a valid choice"),
        ({"sort": "random()"}, "Select a valid choice"),
    ],
)
def test_bad_filters_get_a_message_naming_the_field(client_for, users, params, message):
    # given
    client = client_for("support")
    # when
    response = client.get(AUDIT, params)
    # then
    assert response.status_code == 400
    assert message in response.content.decode()
    assert response.context["page"] is None


@pytest.mark.parametrize(
    "cursor", ["garbage", "bmV3ZXN0Ong=", "c2xvd2VzdDoxOjI=", "bmV3ZXN0Ojk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5"]
)
def test_bad_cursor_falls_back_to_the_first_page(client_for, mixed_events, cursor):
    # given
    client = client_for("support")
    # when
    response = client.get(AUDIT, {"after": cursor})
    # then
    assert response.status_code == 400
    assert "This page link cannot be used" in response.content.decode()
    assert len(_sequences(response)) == 4


# -------------------------------------------------------------------------------------------- pagination


@pytest.mark.parametrize("sort", ["newest", "oldest", "slowest"])
def test_keyset_pages_cover_every_event_once_both_ways(client_for, users, sort):
    # given: 60 events, latencies with ties
    events = [record(principal_id="service:5", tool="task.list", latency_ms=i % 7) for i in range(60)]
    client = client_for("support")
    # when: forward through every page
    seen: list[int] = []
    pages = []
    response = client.get(AUDIT, {"sort": sort, "limit": 25, "principal": "service:5"})
    while True:
        pages.append(_sequences(response))
        seen += pages[-1]
        page = response.context["page"]
        if page.next_cursor is None:
            break
        response = client.get(AUDIT, {"sort": sort, "limit": 25, "principal": "service:5", "after": page.next_cursor})
    # then
    assert sorted(seen) == sorted(e.sequence for e in events)
    assert len(seen) == 60
    assert [len(p) for p in pages] == [25, 25, 10]
    if sort == "newest":
        assert seen == sorted(seen, reverse=True)
    # when: back one page from the last
    back = client.get(
        AUDIT, {"sort": sort, "limit": 25, "principal": "service:5", "before": response.context["page"].prev_cursor}
    )
    # then
    assert _sequences(back) == pages[1]


# ------------------------------------------------------------------------------------------------ detail


def test_detail_shows_the_redacted_request_and_is_itself_audited(client_for, users):
    # given
    event = record(
        principal_id="service:3",
        tool="task.create",
        arguments={"title": "t", "api_key": "sk-very-secret"},
        latency_ms=12.5,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        detail={"result": "created task 7"},
    )
    client = client_for("support")
    # when
    response = client.get(f"/support/audit/{event.sequence}/")
    # then
    body = response.content.decode()
    assert response.status_code == 200
    assert "sk-very-secret" not in body
    assert "4bf92f3577b34da6a3ce929d0e0e4736" in body
    assert "created task 7" in body
    assert "12.5 ms" in body
    viewed = AuditEvent.objects.order_by("-sequence").first()
    assert viewed.method == "support.audit_event_view"
    assert viewed.principal_id == f"user:{users['support'].pk}"
    assert json.loads(viewed.detail) == {"found": True, "sequence": event.sequence}


@pytest.mark.parametrize("path", ["/support/audit/424242/", "/support/audit/99999999999999999999999/"])
def test_unknown_audit_event_is_a_clear_404(client_for, users, path):
    # when
    response = client_for("support").get(path)
    # then
    assert response.status_code == 404
    assert "There is no audit event #" in response.content.decode()


# ------------------------------------------------------------------------------------------------ export


def test_csv_export_streams_the_filtered_set(client_for, mixed_events):
    # given
    client = client_for("support")
    record(principal_id="service:1", tool="=cmd|' /C calc'!A0")
    # when
    response = client.get("/support/audit/export.csv", {"principal": "service:1", "sort": "oldest"})
    # then
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    assert [int(r["sequence"]) for r in rows[:2]] == [mixed_events["a"].sequence, mixed_events["c"].sequence]
    assert rows[2]["tool"].startswith("'=")  # spreadsheet formula neutralised
    assert AuditEvent.objects.filter(method="support.audit_export").count() == 1


def test_jsonl_export_is_one_event_per_line(client_for, mixed_events):
    # when
    response = client_for("staff").get("/support/audit/export.jsonl", {"outcome": "error"})
    # then
    lines = _body(response).splitlines()
    assert response["Content-Type"] == "application/x-ndjson"
    assert [json.loads(line)["sequence"] for line in lines] == [mixed_events["c"].sequence]
    assert json.loads(lines[0])["error_code"] == "timeout"


def test_export_with_a_bad_filter_names_the_field(client_for, users):
    # when
    response = client_for("support").get("/support/audit/export.jsonl", {"since": "yesterday"})
    # then
    assert response.status_code == 400
    assert "since: Enter a valid date/time" in response.content.decode()


# ------------------------------------------------------------------------------------------------- chain


def test_chain_page_shows_the_first_broken_link(client_for, users):
    # given
    events = [record(principal_id="service:1", tool="task.list") for _ in range(5)]
    client = client_for("support")
    assert "Chain intact." in client.get("/support/audit/chain/").content.decode()
    with connection.cursor() as cursor:  # tamper (the append-only trigger is bypassed for the test)
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only")
        cursor.execute("UPDATE audit_auditevent SET tool = 'sandbox.exec' WHERE sequence = %s", [events[2].sequence])
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_auditevent_append_only")
    # when
    response = client.get("/support/audit/chain/", {"full": "1"})
    # then
    body = response.content.decode()
    assert f'Chain BROKEN at <a href="/support/audit/{events[2].sequence}/">#{events[2].sequence}</a>' in body
    assert "the row was edited" in body
    assert "BROKEN" in client.get(AUDIT).content.decode()


# --------------------------------------------------------------------------------------------- runs/jobs


@pytest.fixture
def run_with_job(users):
    owner = Principal(id="service:8", kind="service", name="agent", identity_source="api_token", grants=frozenset())
    run = runs_services.run_start(principal=owner, name="nightly import", metadata=None, lease_seconds=300)
    job = Job.objects.create(
        tool="task.list",
        queue="default",
        arguments={"password": "hunter22", "q": "x"},
        arguments_digest="0" * 64,
        principal_id=owner.id,
        principal=owner.to_dict(),
        run=run,
        ttl_ms=60000,
    )
    return run, job


def test_run_timeline_lists_jobs_and_events(client_for, run_with_job):
    # given
    run, job = run_with_job
    # when
    response = client_for("support").get(f"/support/runs/{run.pk}/")
    job_page = client_for("support").get(f"/support/jobs/{job.pk}/")
    # then
    body = response.content.decode()
    assert "run.started" in body
    assert f'data-job-id="{job.pk}"' in body
    assert "disabled" in body  # the support user's cancel button
    assert "hunter22" not in job_page.content.decode()


@pytest.mark.parametrize(
    ("kind", "status", "state"), [("support", 403, JobState.QUEUED), ("staff", 302, JobState.CANCELLED)]
)
def test_only_staff_can_cancel_a_job(client_for, run_with_job, kind, status, state):
    # given
    _, job = run_with_job
    # when
    response = client_for(kind).post(f"/support/jobs/{job.pk}/cancel/", {"reason": "stuck"})
    # then
    assert response.status_code == status
    job.refresh_from_db()
    assert job.state == state
    last = AuditEvent.objects.order_by("-sequence").first()
    assert last.method == "support.job_cancel"
    assert last.outcome == ("denied" if kind == "support" else "ok")
    if kind == "support":
        assert "cancelling a job needs a staff account" in response.content.decode()


def test_staff_cancels_a_run_and_its_jobs(client_for, run_with_job):
    # given
    run, job = run_with_job
    client = client_for("staff")
    # when
    response = client.post(f"/support/runs/{run.pk}/cancel/", {"reason": "wrong input"}, follow=True)
    # then
    run.refresh_from_db()
    job.refresh_from_db()
    assert run.state == "cancelled"
    assert job.state == JobState.CANCELLED
    assert "Run cancelled; 1 in-flight job(s) cancelled with it." in response.content.decode()


@pytest.mark.parametrize(
    "path",
    [
        f"/support/runs/{uuid.uuid4()}/",
        "/support/runs/not-a-uuid/",
        f"/support/jobs/{uuid.uuid4()}/",
        "/support/jobs/1/",
    ],
)
def test_unknown_run_or_job_is_a_clear_404(client_for, users, path):
    # when
    response = client_for("support").get(path)
    # then
    assert response.status_code == 404
    assert "Check the id" in response.content.decode()


def test_bad_run_filter_is_named(client_for, users):
    # when
    response = client_for("support").get("/support/runs/", {"state": "exploded"})
    # then
    assert response.status_code == 400
    assert "exploded&#x27; does not exist" in response.content.decode()


def test_urls_resolve():
    assert reverse("support:audit") == AUDIT
