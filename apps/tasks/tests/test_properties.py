"""Property-based tests (Hypothesis) of the two graph invariants, on the real database."""

from __future__ import annotations

import itertools
from graphlib import CycleError, TopologicalSorter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.tasks import selectors, services
from apps.tasks.errors import TaskError
from apps.tasks.models import RESOLVED, Dependency, Project, Status, Task
from apps.tasks.tests.conftest import make_principal

_keys = itertools.count(1)
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
OWNER = make_principal("prop-owner")


def _reaches(edges: set[tuple[int, int]], start: int, goal: int) -> bool:
    seen, stack = {start}, [start]
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for task, dep in edges:
            if task == node and dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return False


@PROPERTY
@given(size=st.integers(2, 7), attempts=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=25))
def test_random_edge_insertions_never_make_a_cycle(db, size, attempts):
    # given a fresh project of `size` tasks
    project = services.project_create(principal=OWNER, key=f"prop-{next(_keys)}")
    ids = [services.task_create(principal=OWNER, project=project.key, title=f"t{i}").pk for i in range(size)]
    model: set[tuple[int, int]] = set()
    # when edges are inserted in a random order
    for i, j in attempts:
        task, dep = ids[i % size], ids[j % size]
        refusal: TaskError | None = None
        try:
            services.dependency_add(principal=OWNER, task_id=task, depends_on_id=dep)
        except TaskError as exc:
            refusal = exc
        # then every refusal is the right one, and a named cycle is a real cycle through the new edge
        if task == dep:
            expected = "self_dependency"
        elif (task, dep) in model:
            expected = "duplicate_dependency"
        elif _reaches(model, dep, task):
            expected = "dependency_cycle"
        else:
            expected = None
        assert (refusal.code if refusal else None) == expected
        if refusal and expected == "dependency_cycle":
            cycle = refusal.data["cycle"]
            assert cycle[0] == cycle[-1] == task
            assert all((a, b) in model | {(task, dep)} for a, b in itertools.pairwise(cycle))
        if refusal is None:
            model.add((task, dep))
    # and the open-dependency counters next_action relies on are exact
    assert services.task_counters_refresh(project_id=project.pk) == 0
    # and the stored graph is exactly the accepted edges, and acyclic
    stored = set(Dependency.objects.filter(task__project=project).values_list("task_id", "depends_on_id"))
    assert stored == model
    sorter = TopologicalSorter({node: set() for node in ids})
    for task, dep in stored:
        sorter.add(task, dep)
    try:
        tuple(sorter.static_order())
    except CycleError as exc:  # pragma: no cover - the property under test
        raise AssertionError(f"cycle stored: {exc.args[1]}") from None


statuses = st.sampled_from(Status.values)


@PROPERTY
@given(
    nodes=st.lists(st.tuples(statuses, st.integers(0, 20), st.booleans()), min_size=1, max_size=10),
    edges=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), max_size=20),
)
def test_next_action_never_returns_a_task_with_an_unfinished_dependency(db, nodes, edges):
    # given arbitrary states (set directly: this is a fixture, not a transition), parents and acyclic edges
    project = Project.objects.create(key=f"prop-{next(_keys)}", name="p", owner=OWNER.id)
    tasks: list[Task] = []
    for index, (status, parent, assigned) in enumerate(nodes):
        parent_task = tasks[parent % index] if index and parent % 3 else None
        tasks.append(
            Task.objects.create(
                project=project,
                title=f"t{index}",
                status=status,
                parent=parent_task,
                assignee="service:someone-else" if assigned else "",
            )
        )
    pairs = {(max(i, j) % len(tasks), min(i, j) % len(tasks)) for i, j in edges}
    pairs = {(i, j) for i, j in pairs if i != j}  # dependencies point to earlier tasks: acyclic
    for i, j in pairs:
        Dependency.objects.create(task=tasks[i], depends_on=tasks[j])
    services.task_counters_refresh(project_id=project.pk)  # rows were written directly, not through services
    # when
    result = services.task_next_action(principal=OWNER, project=project.key, limit=100)
    returned = [task.pk for task, _ in result.ready]
    # then no returned task waits on anything, and the set is exactly the model's ready set
    by_id = {t.pk: t for t in tasks}
    deps = {t.pk: [tasks[j].pk for i, j in pairs if tasks[i].pk == t.pk] for t in tasks}

    def waits(task: Task) -> bool:
        return any(by_id[d].status not in RESOLVED for d in deps[task.pk])

    def ancestor_blocks(task: Task) -> bool:
        parent = task.parent
        while parent is not None:
            parent = by_id[parent.pk]
            if parent.status in (Status.BLOCKED, Status.DEFERRED, Status.CANCELLED) or waits(parent):
                return True
            parent = parent.parent
        return False

    def open_children(task: Task) -> bool:
        return any(t.parent_id == task.pk and t.status not in RESOLVED for t in tasks)

    for task_id in returned:
        assert not waits(by_id[task_id])
    expected = {
        t.pk
        for t in tasks
        if t.status == Status.TODO
        and not t.assignee
        and not waits(t)
        and not ancestor_blocks(t)
        and not open_children(t)
    }
    assert set(returned) == expected
    # and the graph's "ready" state agrees with next_action for unassigned tasks
    graph = selectors.dep_graph(principal=OWNER, project=project.key)
    assert {n.id for n in graph.nodes if n.state == "ready" and not n.assignee} == expected


@PROPERTY
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["status", "edge", "unedge", "parent"]), st.integers(0, 5), st.integers(0, 5), statuses
        ),
        max_size=30,
    )
)
def test_services_keep_the_open_counters_exact(db, steps):
    # given six tasks
    project = services.project_create(principal=OWNER, key=f"prop-{next(_keys)}")
    ids = [services.task_create(principal=OWNER, project=project.key, title=f"t{i}").pk for i in range(6)]
    # when random status changes, edge changes and parent moves go through the services (refusals included)
    for kind, i, j, status in steps:
        task = Task.objects.get(pk=ids[i])
        try:
            if kind == "status":
                services.task_update(principal=OWNER, task_id=task.pk, version=task.version, status=status)
            elif kind == "edge":
                services.dependency_add(principal=OWNER, task_id=task.pk, depends_on_id=ids[j])
            elif kind == "unedge":
                services.dependency_remove(principal=OWNER, task_id=task.pk, depends_on_id=ids[j])
            else:
                services.task_update(principal=OWNER, task_id=task.pk, version=task.version, parent=ids[j])
        except TaskError:
            pass
    # then no counter needs repair
    assert services.task_counters_refresh(project_id=project.pk) == 0
