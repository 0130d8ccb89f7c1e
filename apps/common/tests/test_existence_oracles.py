"""No existence oracle: another principal's object and one that never existed give the same answer (issue 21, class 6).

A table of every id, cursor and name argument a caller can send — each tool and argument, and the MCP tasks methods —
is called by principal B twice: once with an object principal A owns (in every state that matters), once with a
fresh id of the same shape. The two answers, with the id itself masked, must be equal: same outcome, same code, same
message, same data.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.accounts.principal import Principal
from apps.gateway.registry import ToolContext, ToolError, registry
from apps.memory.selectors import MemoryAccessError
from apps.runs.mcp_tasks import TaskError as McpTaskError

pytestmark = pytest.mark.django_db

_ALL = frozenset({"run.*", "task.*", "memory.*", "sandbox.*", "browser.*"})


def _principal(name: str, grants: frozenset[str] = _ALL) -> Principal:
    return Principal(
        id=f"service:oracle-{name}",
        kind="service",
        name=f"oracle-{name}",
        identity_source="internal",
        roles=frozenset({f"oracle-{name}-role"}),
        grants=grants,
    )


A, B, C = _principal("a"), _principal("b"), _principal("c")
MANAGER = _principal("m", _ALL | {"runs.manage"})  # sees every job and run by design, yet no MCP task oracle


class _Context(ToolContext):
    """A handler's context outside the gateway (inline call, no cancellation)."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.request_id = self.run_id = self.job_id = None


@dataclass(frozen=True)
class Owned:
    """What A (and C) own, by kind: the ids B probes."""

    ids: dict[str, Any]


@pytest.fixture
def owned(redis_client) -> Owned:
    from apps.browser import leases
    from apps.memory.models import MemoryNamespaceGrant
    from apps.runs import services as runs
    from apps.sandbox.models import Sandbox, SandboxState, Snapshot
    from apps.tasks import services as tasks

    registry.autodiscover()
    now = timezone.now()
    later = now + timedelta(hours=1)
    run = runs.run_start(principal=A, name="a's run", metadata=None, lease_seconds=60)
    job = runs.job_submit(
        tool=registry.get("sandbox.exec"), arguments={"sandbox_id": str(uuid.uuid4()), "code": "1"}, principal=A
    )
    project = tasks.project_create(principal=A, key=f"oracle-{uuid.uuid4().hex[:8]}")
    task = tasks.task_create(principal=A, title="a's task", project=project.key)
    b_project = tasks.project_create(principal=B, key=f"oracle-b-{uuid.uuid4().hex[:8]}")
    b_task = tasks.task_create(principal=B, title="b's task", project=b_project.key)
    sandbox_fields = {"image": "x", "ttl_s": 60, "idle_ttl_s": 60, "last_used_at": now}
    live = Sandbox.objects.create(
        owner_id=A.id, state=SandboxState.RUNNING, expires_at=later, idle_expires_at=later, **sandbox_fields
    )
    gone = Sandbox.objects.create(
        owner_id=A.id,
        state=SandboxState.DESTROYED,
        expires_at=now,
        idle_expires_at=now,
        destroyed_at=now,
        destroy_reason="destroyed by owner",
        **sandbox_fields,
    )
    snapshot = Snapshot.objects.create(owner_id=A.id, base_image="x", image_ref="y", workdir_artifact="z")
    session = uuid.uuid4().hex
    assert leases.lease_acquire(session_id=session, owner="oracle-worker", principal=A.id, role="oracle", cap=5)
    shared = f"team-{uuid.uuid4().hex[:8]}"
    MemoryNamespaceGrant.objects.create(namespace=shared, principal_id=C.id, can_write=True)
    return Owned(
        ids={
            "run": str(run.pk),
            "job": str(job.pk),
            "project": project.key,
            "task": task.pk,
            "b_task": b_task.pk,
            "sandbox": str(live.pk),
            "sandbox_destroyed": str(gone.pk),
            "snapshot": str(snapshot.pk),
            "session": session,
            "namespace_own": A.id,
            "namespace_shared": shared,
        }
    )


def _fresh(kind: str, real: Any) -> Any:
    """An id of the same shape as `real` that names nothing."""
    if isinstance(real, int):
        return 900_000_000 + real
    if kind == "session":
        return uuid.uuid4().hex
    if kind.startswith("namespace"):
        return f"team-{uuid.uuid4().hex[:8]}" if kind == "namespace_shared" else f"service:oracle-{uuid.uuid4().hex}"
    if kind == "project":
        return f"oracle-{uuid.uuid4().hex[:8]}"
    return str(uuid.uuid4())


# (surface, kind of id, the call given (owned ids, the probed id)); every id/cursor/name argument of every tool.
Call = Callable[[dict[str, Any], Any], dict[str, Any]]
TOOLS: list[tuple[str, str, Call]] = [
    ("run.cancel", "run", lambda o, i: {"run_id": i}),
    ("run.heartbeat", "run", lambda o, i: {"run_id": i}),
    ("run.resume", "run", lambda o, i: {"run_id": i}),
    ("task.update", "task", lambda o, i: {"id": i, "version": 1, "title": "x"}),
    ("task.update", "task", lambda o, i: {"id": o["b_task"], "version": 1, "add_dependencies": [i]}),
    ("task.update", "task", lambda o, i: {"id": o["b_task"], "version": 1, "parent": i}),
    ("task.list", "task", lambda o, i: {"parent": i}),
    ("task.list", "project", lambda o, i: {"project": i}),
    ("task.create", "project", lambda o, i: {"project": i, "title": "x"}),
    ("task.create", "task", lambda o, i: {"title": "x", "parent": i}),
    ("task.create", "task", lambda o, i: {"title": "x", "depends_on": [i]}),
    ("task.dep_graph", "task", lambda o, i: {"root": i}),
    ("task.dep_graph", "project", lambda o, i: {"project": i}),
    ("task.next_action", "project", lambda o, i: {"project": i}),
    ("sandbox.exec", "sandbox", lambda o, i: {"sandbox_id": i, "command": "true"}),
    ("sandbox.exec", "sandbox_destroyed", lambda o, i: {"sandbox_id": i, "command": "true"}),
    ("sandbox.destroy", "sandbox", lambda o, i: {"sandbox_id": i}),
    ("sandbox.destroy", "sandbox_destroyed", lambda o, i: {"sandbox_id": i}),
    ("sandbox.snapshot", "sandbox", lambda o, i: {"sandbox_id": i}),
    ("sandbox.snapshot", "sandbox_destroyed", lambda o, i: {"sandbox_id": i}),
    ("sandbox.create", "snapshot", lambda o, i: {"snapshot_id": i}),
    ("browser.act", "session", lambda o, i: {"session": i, "action": "click", "ref": "e1"}),
    ("browser.extract", "session", lambda o, i: {"session": i}),
    ("browser.trace", "session", lambda o, i: {"session": i, "action": "start"}),
    ("memory.search", "namespace_own", lambda o, i: {"query": "x", "namespace": i, "mode": "lexical"}),
    ("memory.search", "namespace_shared", lambda o, i: {"query": "x", "namespace": i, "mode": "lexical"}),
    ("memory.timeline", "namespace_own", lambda o, i: {"namespace": i}),
    ("memory.timeline", "namespace_shared", lambda o, i: {"namespace": i}),
    ("memory.store", "namespace_own", lambda o, i: {"namespace": i, "items": [{"content": "x"}]}),
    ("memory.store", "namespace_shared", lambda o, i: {"namespace": i, "items": [{"content": "x"}]}),
    ("memory.compact", "namespace_own", lambda o, i: {"namespace": i, "dry_run": True}),
    ("memory.compact", "namespace_shared", lambda o, i: {"namespace": i, "dry_run": True}),
]


def _answer(run: Callable[[], Any], probed: Any) -> tuple[str, Any]:
    """The outcome as a caller sees it, with the probed id masked."""
    try:
        value = run()
    except ToolError as exc:
        outcome: tuple[str, Any] = ("error", {"code": exc.code, "message": exc.message, "data": exc.data})
    except (McpTaskError, MemoryAccessError) as exc:  # JSON-RPC task errors; memory errors a handler did not wrap
        outcome = ("error", {"type": type(exc).__name__, "code": getattr(exc, "code", None), "message": str(exc)})
    else:
        outcome = ("ok", value)
    return _mask(outcome, probed)


def _mask(value: Any, probed: Any) -> Any:
    if isinstance(value, str):
        return re.sub(rf"(?<![\w-]){re.escape(str(probed))}(?![\w-])", "<ID>", value)
    if value == probed and not isinstance(value, bool):
        return "<ID>"
    if isinstance(value, dict):
        return {k: _mask(v, probed) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask(v, probed) for v in value)
    return value


@pytest.mark.parametrize(
    ("tool_name", "kind", "make"), TOOLS, ids=[f"{t}:{k}:{i}" for i, (t, k, _) in enumerate(TOOLS)]
)
def test_tool_answers_the_same_for_someone_elses_id_and_a_fresh_one(owned, tool_name, kind, make):
    tool = registry.get(tool_name)
    ctx = _Context(B)
    theirs, fresh = owned.ids[kind], _fresh(kind, owned.ids[kind])
    # when B sends A's id, and an id that names nothing
    seen_theirs = _answer(lambda: tool.handler(ctx, make(owned.ids, theirs)), theirs)
    seen_fresh = _answer(lambda: tool.handler(ctx, make(owned.ids, fresh)), fresh)
    # then B cannot tell them apart (and neither call did anything)
    assert seen_theirs == seen_fresh
    assert seen_fresh[0] == "error", seen_fresh


MCP_TASKS: list[tuple[str, Callable[[Any, Principal, Any], Any]]] = [
    ("tasks/get", lambda m, p, i: m.task_get(i, p, era="2025-11-25")),
    ("tasks/get 2026", lambda m, p, i: m.task_get(i, p, era="2026-07-28")),
    ("tasks/cancel", lambda m, p, i: m.task_cancel(i, p, era="2025-11-25")),
    ("tasks/cancel 2026", lambda m, p, i: m.task_cancel(i, p, era="2026-07-28")),
    ("tasks/update", lambda m, p, i: m.task_update(i, p, input_responses={})),
    ("tasks/list cursor", lambda m, p, i: m.task_list(p, cursor=i, era="2025-11-25")),
    ("tasks/list cursor 2026", lambda m, p, i: m.task_list(p, cursor=i, era="2026-07-28")),
]


@pytest.mark.parametrize("who", [B, MANAGER], ids=["other-principal", "runs-manager"])
@pytest.mark.parametrize(("method", "call"), MCP_TASKS, ids=[m for m, _ in MCP_TASKS])
def test_mcp_tasks_answer_the_same_for_someone_elses_task_and_a_fresh_id(owned, method, call, who):
    from apps.runs import mcp_tasks

    theirs, fresh = owned.ids["job"], str(uuid.uuid4())
    # when
    seen_theirs = _answer(lambda: call(mcp_tasks, who, theirs), theirs)
    seen_fresh = _answer(lambda: call(mcp_tasks, who, fresh), fresh)
    # then
    assert seen_theirs == seen_fresh


def test_job_list_cursor_of_someone_elses_job_is_no_cursor(owned):
    from apps.runs import selectors

    # when B pages from A's job id
    with pytest.raises(ToolError) as err:
        selectors.job_list(B, cursor=owned.ids["job"])
    # then it is refused like any id this server never returned to B
    assert err.value.message == "cursor: not a cursor this server returned; start without one"


# The REST API's id and key arguments (apps/tasks/api): (method, path, query/body), for a user B probing user A.
REST: list[tuple[str, str, str, Callable[[Any], dict[str, Any]]]] = [
    ("get", "task", "/api/tasks/{}/", lambda i: {}),
    ("patch", "task", "/api/tasks/{}/", lambda i: {"version": 1, "title": "x"}),
    ("get", "task", "/api/tasks/", lambda i: {"parent": i}),
    ("get", "task", "/api/tasks/graph/", lambda i: {"root": i}),
    ("get", "project", "/api/tasks/graph/", lambda i: {"project": i}),
    ("get", "project", "/api/tasks/", lambda i: {"project": i}),
    ("post", "project", "/api/tasks/next-action/", lambda i: {"project": i}),
    ("post", "project", "/api/tasks/", lambda i: {"project": i, "title": "x"}),
    ("post", "project", "/api/projects/{}/grants/", lambda i: {"subject": "*", "access": "read"}),
]


def _rest_user(name: str) -> Any:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from rest_framework.test import APIClient

    from apps.accounts.services import role_bind, role_catalog_seed

    role_catalog_seed()
    user = get_user_model().objects.create_user(f"oracle-{name}", password="x" * 12)
    group = Group.objects.get_or_create(name="oracle-agents")[0]
    user.groups.add(group)
    role_bind(role="agent", group=group)
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.parametrize(("method", "kind", "path", "make"), REST, ids=[f"{m} {p} {k}" for m, k, p, _ in REST])
def test_rest_answers_the_same_for_someone_elses_id_and_a_fresh_one(method, kind, path, make):
    # given user A's project and task
    alice, bob = _rest_user("alice"), _rest_user("bob")
    project = alice.post("/api/projects/", {"key": f"o-{uuid.uuid4().hex[:8]}"}, format="json").json()["key"]
    task = alice.post("/api/tasks/", {"project": project, "title": "a"}, format="json").json()["id"]
    theirs = {"task": task, "project": project}[kind]
    fresh = _fresh(kind, theirs)

    def answer(ident: Any) -> tuple[int, Any]:
        send = getattr(bob, method)
        url = path.format(ident)
        response = send(url, make(ident)) if method == "get" else send(url, make(ident), format="json")
        return response.status_code, _mask(response.json(), ident)

    # when / then B cannot tell A's object from nothing
    seen_theirs, seen_fresh = answer(theirs), answer(fresh)
    assert seen_theirs == seen_fresh
    assert seen_fresh[0] == 404, seen_fresh
