from __future__ import annotations

import pytest

from apps.tasks import selectors, services
from apps.tasks.errors import TaskError
from apps.tasks.models import Dependency, Status, Task, TaskEvent
from apps.tasks.tests.conftest import make_principal


def _error(call, **kwargs) -> TaskError:
    with pytest.raises(TaskError) as caught:
        call(**kwargs)
    return caught.value


def test_create_records_history_and_version_one(owner, project):
    # when
    task = services.task_create(principal=owner, project="alpha", title=" Write docs ", labels=["docs", "docs"])
    # then
    assert (task.title, task.status, task.version, task.labels) == ("Write docs", "todo", 1, ["docs"])
    event = TaskEvent.objects.get(task=task)
    assert (event.actor, event.action) == ("service:owner", "created")


def test_update_with_stale_version_is_refused_and_writes_nothing(owner, new_task):
    # given a task changed once (version 2)
    task = new_task("t")
    services.task_update(principal=owner, task_id=task.pk, version=1, title="t2")
    # when someone updates from version 1
    error = _error(services.task_update, principal=owner, task_id=task.pk, version=1, title="lost")
    # then
    assert error.code == "stale_version"
    assert f"task #{task.pk} is at version 2, you sent 1" in error.message
    task.refresh_from_db()
    assert (task.title, task.version) == ("t2", 2)


def test_update_records_field_diff(owner, new_task):
    task = new_task("t")
    # when
    services.task_update(principal=owner, task_id=task.pk, version=1, priority="high", add_labels=["x"])
    # then
    event = TaskEvent.objects.filter(task=task, action="updated").get()
    assert event.changes == {"priority": [2, 3], "labels": [[], ["x"]]}


def test_cycle_is_refused_naming_the_cycle(owner, new_task):
    # given a -> b -> c (a depends on b, b on c)
    c = new_task("c")
    b = new_task("b", depends_on=[c.pk])
    a = new_task("a", depends_on=[b.pk])
    # when c would depend on a
    error = _error(services.task_update, principal=owner, task_id=c.pk, version=1, add_dependencies=[a.pk])
    # then
    assert error.code == "dependency_cycle"
    assert error.data["cycle"] == [c.pk, a.pk, b.pk, c.pk]
    assert f"#{c.pk} -> #{a.pk} -> #{b.pk} -> #{c.pk}" in error.message
    assert not Dependency.objects.filter(task=c).exists()


def test_self_dependency_and_duplicate_edges_are_refused(owner, new_task):
    a = new_task("a")
    b = new_task("b", depends_on=[a.pk])
    assert _error(services.dependency_add, principal=owner, task_id=a.pk, depends_on_id=a.pk).code == "self_dependency"
    assert _error(services.dependency_add, principal=owner, task_id=b.pk, depends_on_id=a.pk).code == (
        "duplicate_dependency"
    )


def test_database_refuses_self_dependency_and_duplicate_edge(new_task):
    from django.db import IntegrityError, transaction

    a = new_task("a")
    b = new_task("b")
    with pytest.raises(IntegrityError), transaction.atomic():
        Dependency.objects.create(task=a, depends_on=a)
    Dependency.objects.create(task=a, depends_on=b)
    with pytest.raises(IntegrityError), transaction.atomic():
        Dependency.objects.create(task=a, depends_on=b)


def test_cross_project_edge_is_refused_and_nothing_written(owner, project, new_task):
    # given a task in another project the owner also writes
    services.project_create(principal=owner, key="beta")
    other = services.task_create(principal=owner, project="beta", title="elsewhere")
    # when creating a task depending on it
    before = Task.objects.count()
    error = _error(services.task_create, principal=owner, project="alpha", title="x", depends_on=[other.pk])
    # then
    assert error.code == "cross_project"
    assert "project 'beta'" in error.message
    assert Task.objects.count() == before


def test_unknown_ids_are_named(owner, new_task):
    task = new_task("a")
    error = _error(services.task_update, principal=owner, task_id=task.pk, version=1, add_dependencies=[999999])
    assert (error.code, error.message) == ("task_not_found", "task #999999 does not exist or is not visible to you")
    assert _error(services.task_update, principal=owner, task_id=424242, version=1).code == "task_not_found"


def test_invalid_transition_names_task_and_rule(owner, new_task):
    task = new_task("a", status="deferred")
    error = _error(services.task_update, principal=owner, task_id=task.pk, version=1, status="done")
    assert error.code == "invalid_transition"
    assert error.message == f"task #{task.pk}: cannot go from deferred to done; from deferred a task may go to " + (
        "cancelled, todo"
    )


def test_done_needs_resolved_dependencies(owner, new_task):
    a = new_task("a")
    b = new_task("b", depends_on=[a.pk])
    error = _error(services.task_update, principal=owner, task_id=b.pk, version=1, status="done")
    assert error.code == "dependency_unfinished"
    assert error.data["unfinished"] == [a.pk]


def test_failed_update_writes_nothing(owner, new_task):
    # given
    a = new_task("a")
    b = new_task("b")
    # when one update changes the title and adds a bad dependency
    _error(services.task_update, principal=owner, task_id=b.pk, version=1, title="new", add_dependencies=[a.pk, b.pk])
    # then neither the title nor the first edge was kept
    b.refresh_from_db()
    assert (b.title, b.version, Dependency.objects.count()) == ("b", 1, 0)


def test_parent_cycle_is_refused(owner, new_task):
    root = new_task("root")
    child = new_task("child", parent=root.pk)
    error = _error(services.task_update, principal=owner, task_id=root.pk, version=1, parent=child.pk)
    assert error.code == "parent_cycle"
    assert error.data["cycle"] == [root.pk, child.pk, root.pk]


def test_namespaces_hide_and_protect_tasks(owner, project, new_task):
    # given a stranger, a reader (role grant) and a writer (principal grant)
    task = new_task("secret")
    stranger = make_principal("stranger", roles=("agent",))
    reader = make_principal("reader", roles=("viewer",))
    writer = make_principal("writer", roles=("agent",))
    services.project_grant(principal=owner, project=project, subject="role:viewer", access="read")
    services.project_grant(principal=owner, project=project, subject=writer.id, access="write")
    # then
    assert selectors.task_list(principal=stranger).tasks == []
    assert _error(services.task_update, principal=stranger, task_id=task.pk, version=1, title="x").code == (
        "task_not_found"
    )
    assert [t.pk for t in selectors.task_list(principal=reader).tasks] == [task.pk]
    assert _error(services.task_update, principal=reader, task_id=task.pk, version=1, title="x").code == "forbidden"
    assert services.task_update(principal=writer, task_id=task.pk, version=1, title="x").version == 2


def test_next_action_ranks_and_explains(owner, new_task):
    # given
    done = new_task("done")
    services.task_update(principal=owner, task_id=done.pk, version=1, status="done")
    low = new_task("low", priority="low")
    new_task("high", priority="high", depends_on=[done.pk])
    new_task("blocked", priority="critical", depends_on=[low.pk])
    # when
    result = services.task_next_action(principal=owner, project="alpha")
    # then
    assert [(t.title, reason) for t, reason in result.ready] == [
        ("high", f"all 1 dependencies resolved (#{done.pk} done); priority high"),
        ("low", "no dependencies; priority low"),
    ]


def test_cancelled_dependency_satisfies(owner, new_task):
    a = new_task("a")
    b = new_task("b", depends_on=[a.pk])
    services.task_update(principal=owner, task_id=a.pk, version=1, status="cancelled")
    result = services.task_next_action(principal=owner, project="alpha")
    assert [(t.pk, r) for t, r in result.ready] == [
        (b.pk, f"all 1 dependencies resolved (#{a.pk} cancelled); priority medium")
    ]


def test_blocked_ancestor_and_open_subtasks_hide_tasks(owner, new_task):
    parent = new_task("parent")
    child = new_task("child", parent=parent.pk)
    # the parent has an open subtask, the child is ready
    assert [t.pk for t, _ in services.task_next_action(principal=owner, project="alpha").ready] == [child.pk]
    services.task_update(principal=owner, task_id=parent.pk, version=1, status="blocked")
    result = services.task_next_action(principal=owner, project="alpha")
    assert result.ready == []
    assert result.message.startswith("nothing ready: 1 todo task(s)")


def test_claim_assigns_and_starts(owner, new_task):
    task = new_task("a")
    agent = make_principal("claimer")
    services.project_grant(principal=owner, project=task.project, subject=agent.id, access="write")
    result = services.task_next_action(principal=agent, claim=True)
    task.refresh_from_db()
    assert result.claimed == task
    assert (task.status, task.assignee, task.version) == (Status.IN_PROGRESS, "service:claimer", 2)
    assert services.task_next_action(principal=agent, claim=True).claimed is None


def test_list_cursor_pages_through_everything(owner, new_task):
    ids = [new_task(f"t{i}", priority=["low", "high"][i % 2]).pk for i in range(7)]
    seen, cursor = [], None
    while True:
        page = selectors.task_list(principal=owner, project="alpha", limit=3, cursor=cursor)
        seen += [t.pk for t in page.tasks]
        if not (cursor := page.next_cursor):
            break
    assert seen == [i for i in ids if ids.index(i) % 2] + [i for i in ids if not ids.index(i) % 2]


def test_dep_graph_states(owner, new_task):
    a = new_task("a")
    b = new_task("b", depends_on=[a.pk])
    graph = selectors.dep_graph(principal=owner, project="alpha")
    states = {n.id: (n.state, n.blocked_by) for n in graph.nodes}
    assert states == {a.pk: ("ready", []), b.pk: ("blocked", [a.pk])}
    assert graph.edges == [(b.pk, a.pk)]


def test_dep_graph_of_a_subtree_marks_outside_tasks_external(owner, new_task):
    # given an epic with two subtasks; one waits on a task outside the epic, the other on its sibling
    outside = new_task("outside")
    epic = new_task("epic")
    first = new_task("first", parent=epic.pk, depends_on=[outside.pk])
    second = new_task("second", parent=epic.pk, depends_on=[first.pk])
    # when
    graph = selectors.dep_graph(principal=owner, root=epic.pk)
    # then
    nodes = {n.id: (n.state, n.blocked_by, n.external) for n in graph.nodes}
    assert nodes == {
        outside.pk: ("todo", [], True),
        epic.pk: ("blocked", [], False),
        first.pk: ("blocked", [outside.pk], False),
        second.pk: ("blocked", [first.pk], False),
    }
    assert sorted(graph.edges) == sorted([(first.pk, outside.pk), (second.pk, first.pk)])


def test_subtree_of_a_blocked_ancestor_is_blocked(owner, new_task):
    gate = new_task("gate")
    top = new_task("top", depends_on=[gate.pk])
    middle = new_task("middle", parent=top.pk)
    leaf = new_task("leaf", parent=middle.pk)
    graph = selectors.dep_graph(principal=owner, root=middle.pk)
    assert {n.id: n.why for n in graph.nodes} == {
        middle.pk: "has open subtasks",
        leaf.pk: f"ancestor #{top.pk} is blocked",
    }
