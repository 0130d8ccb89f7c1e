from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django_otp.oath import totp

from apps.accounts.otp import otp_device_create
from apps.accounts.services import role_catalog_seed
from apps.tasks import services
from apps.tasks.models import Dependency, Task
from apps.tasks.principals import principal_for_user


def totp_code(user) -> str:
    device = user.totpdevice_set.get()
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


@pytest.fixture
def staff(db):
    role_catalog_seed()  # a transactional test elsewhere may have flushed the migration-seeded roles
    user = get_user_model().objects.create_superuser("boss", "b@example.com", "a-long-password-1")
    otp_device_create(user=user, totp=True)
    return user


@pytest.fixture
def admin_client(client, staff):
    device = staff.totpdevice_set.get()
    client.post(
        "/admin/login/",
        {
            "username": "boss",
            "password": "a-long-password-1",
            "otp_device": device.persistent_id,
            "otp_token": totp_code(staff),
        },
    )
    assert client.get("/admin/").status_code == 200
    return client


def test_task_page_shows_graph_and_history(admin_client, staff):
    # given a chain a <- b
    principal = principal_for_user(staff)
    services.project_create(principal=principal, key="ops")
    a = services.task_create(principal=principal, project="ops", title="Provision <db>")
    b = services.task_create(principal=principal, project="ops", title="Migrate", depends_on=[a.pk])
    # when
    page = admin_client.get(f"/admin/tasks/task/{b.pk}/change/").content.decode()
    # then the graph is drawn server-side, labels escaped, and history is listed
    assert f'<line class="edge" data-task="{b.pk}" data-depends-on="{a.pk}"' in page
    assert "Provision &lt;db&gt;" in page
    assert 'data-state="blocked"' in page
    assert "created" in page


def test_bulk_status_action_reports_refusals(admin_client, staff):
    principal = principal_for_user(staff)
    services.project_create(principal=principal, key="ops")
    a = services.task_create(principal=principal, project="ops", title="a")
    b = services.task_create(principal=principal, project="ops", title="b", depends_on=[a.pk])
    # when b (waiting on a) is marked done alone, then both together (a first, by id)
    refused = admin_client.post("/admin/tasks/task/", {"action": "mark_done", "_selected_action": [b.pk]}, follow=True)
    assert Task.objects.get(pk=b.pk).status == "todo"
    both = admin_client.post(
        "/admin/tasks/task/", {"action": "mark_done", "_selected_action": [a.pk, b.pk]}, follow=True
    )
    # then the refusal names the task and the rule; the second run moves both
    assert f"Task #{b.pk} cannot be done: it depends on unfinished #{a.pk} (todo)" in refused.content.decode()
    assert dict(Task.objects.values_list("id", "status")) == {a.pk: "done", b.pk: "done"}
    assert "2 task(s) set to done" in both.content.decode()


def test_admin_refuses_a_cycle_and_keeps_nothing(admin_client, staff):
    principal = principal_for_user(staff)
    services.project_create(principal=principal, key="ops")
    a = services.task_create(principal=principal, project="ops", title="a")
    b = services.task_create(principal=principal, project="ops", title="b", depends_on=[a.pk])
    # when a is edited to depend on b and retitled in the same save
    response = admin_client.post(
        f"/admin/tasks/task/{a.pk}/change/",
        {
            "title": "renamed",
            "description": "",
            "status": "todo",
            "priority": "2",
            "due_date": "",
            "assignee": "",
            "labels": "",
            "parent": "",
            "version": "1",
            "dependency_edges-TOTAL_FORMS": "1",
            "dependency_edges-INITIAL_FORMS": "0",
            "dependency_edges-0-depends_on": str(b.pk),
            "subtasks-TOTAL_FORMS": "0",
            "subtasks-INITIAL_FORMS": "0",
            "events-TOTAL_FORMS": "0",
            "events-INITIAL_FORMS": "1",
        },
        follow=True,
    )
    # then the cycle is named and neither the title nor the edge is kept
    assert f"would close the cycle #{a.pk} -&gt; #{b.pk} -&gt; #{a.pk}" in response.content.decode()
    a.refresh_from_db()
    assert (a.title, a.version, Dependency.objects.filter(task=a).count()) == ("a", 1, 0)


def test_project_and_grant_created_in_the_admin(admin_client, staff):
    # when staff create a project with a grant for the agent role
    response = admin_client.post(
        "/admin/tasks/project/add/",
        {
            "key": "made-here",
            "name": "Made here",
            "personal": "",
            "grants-TOTAL_FORMS": "1",
            "grants-INITIAL_FORMS": "0",
            "grants-0-subject": "role:agent",
            "grants-0-access": "write",
        },
    )
    # then the project is theirs and the grant exists
    from apps.tasks.models import Project

    assert response.status_code == 302
    project = Project.objects.get(key="made-here")
    assert project.owner == f"user:{staff.pk}"
    assert list(project.grants.values_list("subject", "access")) == [("role:agent", "write")]
