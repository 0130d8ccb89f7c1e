from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from apps.accounts.services import role_bind, role_catalog_seed
from apps.tasks import services
from apps.tasks.models import Task
from apps.tasks.principals import principal_for_user


def _client(role: str | None) -> APIClient:
    role_catalog_seed()  # the migration seeds it, but a transactional test elsewhere may have flushed the tables
    client = APIClient()
    if role is None:
        return client
    user = get_user_model().objects.create_user(f"u-{role}", password="x" * 12)
    if role != "none":  # bound through a group, as staff would in the admin
        group = Group.objects.get_or_create(name=f"{role}s")[0]
        user.groups.add(group)
        role_bind(role=role, group=group)
    client.force_authenticate(user)
    return client


@pytest.mark.parametrize(
    ("_case", "role", "expected"),
    [("anonymous", None, 403), ("no role", "none", 403), ("viewer", "viewer", 403), ("agent", "agent", 201)],
)
def test_create_across_roles(db, _case, role, expected):
    # given
    client = _client(role)
    # when
    response = client.post("/api/tasks/", {"title": "via REST"}, format="json")
    # then
    assert response.status_code == expected
    assert Task.objects.filter(title="via REST").count() == (1 if expected == 201 else 0)
    if role == "viewer":
        assert response.json()["message"] == "your roles do not grant 'task.create': ask an admin for a role that does"


def test_create_update_graph_and_next_action_over_rest(db):
    client = _client("agent")
    project = client.post("/api/projects/", {"key": "rest"}, format="json").json()
    assert project["key"] == "rest"
    a = client.post("/api/tasks/", {"project": "rest", "title": "a"}, format="json").json()
    b = client.post("/api/tasks/", {"project": "rest", "title": "b", "depends_on": [a["id"]]}, format="json").json()
    # a stale update is a 409 naming the task
    client.patch(f"/api/tasks/{a['id']}/", {"version": 1, "priority": "high"}, format="json")
    stale = client.patch(f"/api/tasks/{a['id']}/", {"version": 1, "title": "x"}, format="json")
    assert stale.status_code == 409
    assert stale.json()["code"] == "stale_version"
    # a cycle is a 409 naming the cycle
    cycle = client.patch(f"/api/tasks/{a['id']}/", {"version": 2, "add_dependencies": [b["id"]]}, format="json")
    assert (cycle.status_code, cycle.json()["data"]["cycle"]) == (409, [a["id"], b["id"], a["id"]])
    graph = client.get("/api/tasks/graph/", {"project": "rest"}).json()
    assert {n["id"]: n["state"] for n in graph["nodes"]} == {a["id"]: "ready", b["id"]: "blocked"}
    mermaid = client.get("/api/tasks/graph/", {"project": "rest", "render": "mermaid"}).json()["mermaid"]
    assert f"t{a['id']} --> t{b['id']}" in mermaid
    claimed = client.post("/api/tasks/next-action/", {"claim": True}, format="json").json()
    assert claimed["claimed"]["id"] == a["id"]
    detail = client.get(f"/api/tasks/{a['id']}/").json()
    assert [h["action"] for h in detail["history"]] == ["claimed", "updated", "created"]
    listing = client.get("/api/tasks/", {"project": "rest", "status": "in_progress"}).json()
    assert [t["id"] for t in listing["tasks"]] == [a["id"]]


def test_unknown_task_is_404(db):
    response = _client("agent").get("/api/tasks/987654/")
    assert response.status_code == 404
    assert response.json()["message"] == "task #987654 does not exist or is not visible to you"


def test_schema_and_docs_are_self_hosted(db):
    client = _client("agent")
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/tasks/next-action/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()


def test_superuser_principal_is_admin(db):
    role_catalog_seed()
    user = get_user_model().objects.create_superuser("root", "r@example.com", "x" * 12)
    principal = principal_for_user(user)
    assert (principal.id, principal.roles, principal.can_call("task.update")) == (f"user:{user.pk}", {"admin"}, True)
    # and an admin sees every project
    owner = principal_for_user(get_user_model().objects.create_user("other", password="x" * 12, is_staff=True))
    services.project_create(principal=owner, key="theirs")
    assert services.task_create(principal=principal, project="theirs", title="t").project.key == "theirs"
