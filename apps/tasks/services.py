"""Writes. Every service is one transaction: on any error nothing is written. Graph-changing writes (dependencies,
parents) hold a per-project advisory lock, so two concurrent edge insertions cannot together close a cycle."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.accounts.principal import Principal
from apps.tasks import selectors
from apps.tasks.errors import TaskError
from apps.tasks.models import RESOLVED, Access, Dependency, Priority, Project, ProjectGrant, Status, Task, TaskEvent

_GRAPH_LOCK: Final = 0x7461736B  # "task": advisory lock class id; the project id is the object id

TRANSITIONS: dict[str, frozenset[str]] = {
    Status.TODO: frozenset({Status.IN_PROGRESS, Status.BLOCKED, Status.DONE, Status.CANCELLED, Status.DEFERRED}),
    Status.IN_PROGRESS: frozenset({Status.TODO, Status.BLOCKED, Status.DONE, Status.CANCELLED, Status.DEFERRED}),
    Status.BLOCKED: frozenset({Status.TODO, Status.IN_PROGRESS, Status.CANCELLED, Status.DEFERRED}),
    Status.DEFERRED: frozenset({Status.TODO, Status.CANCELLED}),
    Status.DONE: frozenset({Status.TODO}),
    Status.CANCELLED: frozenset({Status.TODO}),
}
CREATE_STATUSES = frozenset({Status.TODO, Status.IN_PROGRESS, Status.BLOCKED, Status.DEFERRED})


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def _chain(ids: Sequence[int]) -> str:
    return " -> ".join(f"#{i}" for i in ids)


def _lock_graph(project_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_GRAPH_LOCK, project_id])


def _event(*, task: Task, principal: Principal, action: str, changes: dict[str, Any]) -> None:
    TaskEvent.objects.create(task=task, actor=principal.id, actor_name=principal.name, action=action, changes=changes)


def _clean(task: Task) -> None:
    try:
        task.full_clean(exclude=["project", "parent"])
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise TaskError("invalid_argument", f"{field}: {' '.join(messages)}", task=task.pk, field=field) from None


def _labels(labels: Iterable[str]) -> list[str]:
    cleaned: list[str] = []
    for label in labels:
        value = str(label).strip()
        if not 1 <= len(value) <= 64:
            raise TaskError("invalid_argument", f"labels: {label!r} must be 1-64 characters", field="labels")
        if value not in cleaned:
            cleaned.append(value)
    return cleaned


def _priority(value: int | str) -> int:
    if isinstance(value, str):
        by_name = {label: number for number, label in Priority.choices}
        if value in by_name:
            return by_name[value]
    if value in Priority.values:
        return int(value)
    raise TaskError(
        "invalid_argument", f"priority: {value!r} is not one of low, medium, high, critical (or 1-4)", field="priority"
    )


def _due(value: dt.date | str | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise TaskError(
            "invalid_argument", f"due_date: {value!r} is not a date (YYYY-MM-DD)", field="due_date"
        ) from None


def _unresolved_dependencies(task: Task) -> list[tuple[int, str]]:
    return list(
        Dependency.objects.filter(task=task)
        .exclude(depends_on__status__in=RESOLVED)
        .order_by("depends_on_id")
        .values_list("depends_on_id", "depends_on__status")
    )


def _open(status: str) -> bool:
    return status not in RESOLVED


def _counters_on_status_change(task: Task, old: str, new: str) -> None:
    """Keep dependents' open_dependencies and the parent's open_subtasks in step with task's status."""
    if _open(old) == _open(new):
        return
    delta = 1 if _open(new) else -1
    dependents = Dependency.objects.filter(depends_on=task).values("task_id")
    Task.objects.filter(pk__in=dependents).update(open_dependencies=F("open_dependencies") + delta)
    if task.parent_id:
        Task.objects.filter(pk=task.parent_id).update(open_subtasks=F("open_subtasks") + delta)


def _graph_write_access(*, principal: Principal, task_id: int) -> Task:
    """The task, row-locked, after taking its project's graph lock. Lock order is always graph lock, then rows:
    status changes that resolve or reopen a task, edge changes and parent moves all take it, so the open
    counters they adjust cannot race (and two writers cannot deadlock on each other's rows)."""
    project_id = Task.objects.filter(pk=task_id).values_list("project_id", flat=True).first()
    if project_id is not None:
        _lock_graph(project_id)
    return selectors.task_access(principal=principal, task_id=task_id, write=True, lock=True)


_RESOLVED_SQL = ", ".join(f"'{status}'" for status in RESOLVED)
COUNTERS_SQL = f"""
UPDATE tasks_task t
SET open_dependencies = fresh.deps, open_subtasks = fresh.subs
FROM (
    SELECT x.id,
           (SELECT count(*) FROM tasks_dependency d JOIN tasks_task u ON u.id = d.depends_on_id
             WHERE d.task_id = x.id AND u.status NOT IN ({_RESOLVED_SQL})) AS deps,
           (SELECT count(*) FROM tasks_task c
             WHERE c.parent_id = x.id AND c.status NOT IN ({_RESOLVED_SQL})) AS subs
    FROM tasks_task x WHERE x.project_id = %s
) AS fresh
WHERE t.id = fresh.id AND (t.open_dependencies, t.open_subtasks) IS DISTINCT FROM (fresh.deps, fresh.subs)
"""  # noqa: S608 - only the constant status names are interpolated


def task_counters_refresh(*, project_id: int) -> int:
    """Recompute the open counters of a project from the edges (after bulk loads or deletes); returns how many
    rows were wrong."""
    with connection.cursor() as cursor:
        cursor.execute(COUNTERS_SQL, [project_id])
        return cursor.rowcount


# ------------------------------------------------------------------------------------------------- projects
@transaction.atomic
def project_create(*, principal: Principal, key: str, name: str = "") -> Project:
    if Project.objects.filter(key=key).exists():
        raise TaskError("project_exists", f"project {key!r} already exists: choose another key", project=key)
    project = Project(key=key, name=name or key, owner=principal.id)
    try:
        project.full_clean()
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise TaskError("invalid_argument", f"{field}: {' '.join(messages)}", field=field) from None
    project.save()
    return project


@transaction.atomic
def project_grant(*, principal: Principal, project: Project, subject: str, access: str) -> ProjectGrant:
    """Give `subject` ("user:42", "role:agent", "*") read or write access. Only someone with write access may."""
    if selectors.project_access_level(principal=principal, project=project) != Access.WRITE:
        raise TaskError(
            "forbidden", f"project {project.key!r}: granting access needs write access", project=project.key
        )
    if access not in Access.values:
        raise TaskError("invalid_argument", f"access: {access!r} is not read or write", field="access")
    grant, _ = ProjectGrant.objects.update_or_create(project=project, subject=subject, defaults={"access": access})
    return grant


def project_personal(*, principal: Principal) -> Project:
    """The principal's own project (key "p-<id>"), created on first use."""
    key = "p-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in principal.id)[:62]
    project, _ = Project.objects.get_or_create(
        key=key, defaults={"name": f"{principal.name} (personal)", "owner": principal.id, "personal": True}
    )
    return project


# ------------------------------------------------------------------------------------------------- dependencies
def check_dependency(*, task: Task, depends_on_id: int, principal: Principal) -> Task:
    """Raise unless task -> depends_on may be added now; returns the target. Reads only."""
    if depends_on_id == task.pk:
        raise TaskError("self_dependency", f"task #{task.pk} cannot depend on itself", task=task.pk)
    target = selectors.task_access(principal=principal, task_id=depends_on_id)
    if target.project_id != task.project_id:
        raise TaskError(
            "cross_project",
            f"task #{task.pk} (project {task.project.key!r}) cannot depend on task #{target.pk} in project "
            f"{target.project.key!r}: dependencies stay inside one project",
            task=task.pk,
            depends_on=target.pk,
        )
    if Dependency.objects.filter(task=task, depends_on=target).exists():
        raise TaskError(
            "duplicate_dependency",
            f"task #{task.pk} already depends on task #{target.pk}",
            task=task.pk,
            depends_on=target.pk,
        )
    if task.parent_id and target.pk in selectors.task_ancestors(task.pk):
        raise TaskError(
            "ancestor_dependency",
            f"task #{task.pk} cannot depend on its ancestor #{target.pk}: an ancestor finishes after its subtasks",
            task=task.pk,
            depends_on=target.pk,
        )
    path = selectors.dependency_path(start=target.pk, goal=task.pk)
    if path is not None:
        cycle = [task.pk, *path]
        raise TaskError(
            "dependency_cycle",
            f"task #{task.pk} cannot depend on task #{target.pk}: that would close the cycle " + _chain(cycle),
            task=task.pk,
            depends_on=target.pk,
            cycle=cycle,
        )
    return target


def _dependency_add(*, task: Task, depends_on_id: int, principal: Principal) -> Dependency:
    """Add task -> depends_on. Caller holds the project's graph lock and the transaction."""
    target = check_dependency(task=task, depends_on_id=depends_on_id, principal=principal)
    edge = Dependency(task=task, depends_on=target, created_by=principal.id)
    edge.save()
    if _open(target.status):  # stable: status flips take the graph lock the caller holds
        Task.objects.filter(pk=task.pk).update(open_dependencies=F("open_dependencies") + 1)
    return edge


def _dependency_remove(*, task: Task, depends_on_id: int) -> None:
    status = Task.objects.filter(pk=depends_on_id).values_list("status", flat=True).first()
    deleted, _ = Dependency.objects.filter(task=task, depends_on_id=depends_on_id).delete()
    if deleted and status is not None and _open(status):
        Task.objects.filter(pk=task.pk).update(open_dependencies=F("open_dependencies") - 1)
    if not deleted:
        raise TaskError(
            "invalid_argument",
            f"remove_dependencies: task #{task.pk} does not depend on task #{depends_on_id}",
            task=task.pk,
            depends_on=depends_on_id,
        )


@transaction.atomic
def dependency_add(*, principal: Principal, task_id: int, depends_on_id: int) -> Dependency:
    task = _graph_write_access(principal=principal, task_id=task_id)
    edge = _dependency_add(task=task, depends_on_id=depends_on_id, principal=principal)
    _bump(task, principal, TaskEvent.Action.DEPENDENCY_ADDED, {"depends_on": depends_on_id}, [])
    return edge


@transaction.atomic
def dependency_remove(*, principal: Principal, task_id: int, depends_on_id: int) -> None:
    task = _graph_write_access(principal=principal, task_id=task_id)
    _dependency_remove(task=task, depends_on_id=depends_on_id)
    _bump(task, principal, TaskEvent.Action.DEPENDENCY_REMOVED, {"depends_on": depends_on_id}, [])


def _bump(task: Task, principal: Principal, action: str, changes: dict[str, Any], fields: list[str]) -> None:
    task.version += 1
    task.save(update_fields=[*fields, "version", "updated_at"])
    _event(task=task, principal=principal, action=action, changes=changes)


# ------------------------------------------------------------------------------------------------- parents
def _set_parent(*, task: Task, parent_id: int | None, principal: Principal) -> None:
    if parent_id is None:
        task.parent = None
        return
    if parent_id == task.pk:
        raise TaskError("parent_cycle", f"task #{task.pk} cannot be its own parent", task=task.pk)
    parent = selectors.task_access(principal=principal, task_id=parent_id, write=True)
    if parent.project_id != task.project_id:
        raise TaskError(
            "cross_project",
            f"task #{task.pk} (project {task.project.key!r}) cannot be a subtask of #{parent.pk} in project "
            f"{parent.project.key!r}",
            task=task.pk,
            parent=parent.pk,
        )
    if task.pk is not None:
        chain = selectors.task_ancestors(parent.pk)
        if task.pk in chain:
            cycle = [task.pk, parent.pk, *chain[: chain.index(task.pk) + 1]]
            raise TaskError(
                "parent_cycle",
                f"task #{task.pk} cannot become a subtask of #{parent.pk}, its own descendant: " + _chain(cycle),
                task=task.pk,
                parent=parent.pk,
                cycle=cycle,
            )
        if Dependency.objects.filter(task=task, depends_on_id__in=[parent.pk, *chain]).exists():
            raise TaskError(
                "ancestor_dependency",
                f"task #{task.pk} depends on #{parent.pk} or one of its ancestors, so it cannot become its subtask",
                task=task.pk,
                parent=parent.pk,
            )
    task.parent = parent


# ------------------------------------------------------------------------------------------------- status
def check_transition(*, task: Task, new_status: str) -> None:
    """Raise unless `task` may move to `new_status` now (transition table, dependencies, subtasks)."""
    if new_status not in Status.values:
        raise TaskError(
            "invalid_argument", f"status: {new_status!r} is not one of {', '.join(Status.values)}", field="status"
        )
    old = task.status
    if new_status == old:
        return
    if new_status not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(TRANSITIONS[old]))
        raise TaskError(
            "invalid_transition",
            f"task #{task.pk}: cannot go from {old} to {new_status}; from {old} a task may go to {allowed}",
            task=task.pk,
            status=old,
            requested=new_status,
        )
    if new_status in (Status.IN_PROGRESS, Status.DONE) and task.pk and (waiting := _unresolved_dependencies(task)):
        listed = ", ".join(f"#{dep} ({status})" for dep, status in waiting)
        raise TaskError(
            "dependency_unfinished",
            f"task #{task.pk} cannot be {new_status}: it depends on unfinished {listed}; finish or cancel those first",
            task=task.pk,
            unfinished=[dep for dep, _ in waiting],
        )
    if new_status == Status.DONE and task.pk:
        open_children = list(task.subtasks.exclude(status__in=RESOLVED).values_list("id", flat=True))
        if open_children:
            raise TaskError(
                "dependency_unfinished",
                f"task #{task.pk} cannot be done while its subtasks "
                + ", ".join(f"#{i}" for i in open_children)
                + " are open",
                task=task.pk,
                unfinished=open_children,
            )


# ------------------------------------------------------------------------------------------------- tasks
@transaction.atomic
def task_create(
    *,
    principal: Principal,
    title: str,
    project: str | None = None,
    description: str = "",
    status: str = Status.TODO,
    priority: int | str = Priority.MEDIUM,
    due_date: dt.date | str | None = None,
    assignee: str = "",
    labels: Sequence[str] = (),
    parent: int | None = None,
    depends_on: Sequence[int] = (),
) -> Task:
    if project is None:
        target = project_personal(principal=principal)
    else:
        target = selectors.project_access(principal=principal, key=project, write=True)
    if status not in CREATE_STATUSES:
        raise TaskError(
            "invalid_transition",
            f"status: a new task starts as one of {', '.join(sorted(CREATE_STATUSES))}, not {status!r}",
            field="status",
        )
    task = Task(
        project=target,
        title=title.strip(),
        description=description,
        status=status,
        priority=_priority(priority),
        due_date=_due(due_date),
        assignee=assignee,
        labels=_labels(labels),
        created_by=principal.id,
    )
    _clean(task)
    _lock_graph(target.pk)
    _set_parent(task=task, parent_id=parent, principal=principal)
    task.save()
    if task.parent_id:  # a new task is open
        Task.objects.filter(pk=task.parent_id).update(open_subtasks=F("open_subtasks") + 1)
    if len(set(depends_on)) != len(depends_on):
        raise TaskError("duplicate_dependency", "depends_on: lists a task twice", field="depends_on")
    for dep_id in depends_on:
        _dependency_add(task=task, depends_on_id=dep_id, principal=principal)
    if status == Status.IN_PROGRESS:  # starting at once is allowed only when nothing blocks it
        task.status = Status.TODO
        check_transition(task=task, new_status=Status.IN_PROGRESS)
        task.status = Status.IN_PROGRESS
    _event(
        task=task,
        principal=principal,
        action=TaskEvent.Action.CREATED,
        changes={
            "title": task.title,
            "status": task.status,
            "priority": task.priority,
            **({"parent": parent} if parent else {}),
            **({"depends_on": list(depends_on)} if depends_on else {}),
        },
    )
    return task


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


@transaction.atomic
def task_update(
    *,
    principal: Principal,
    task_id: int,
    version: int,
    title: str = UNSET,
    description: str = UNSET,
    status: str = UNSET,
    priority: int | str = UNSET,
    due_date: dt.date | str | None = UNSET,
    assignee: str = UNSET,
    labels: Sequence[str] = UNSET,
    add_labels: Sequence[str] = (),
    remove_labels: Sequence[str] = (),
    parent: int | None = UNSET,
    add_dependencies: Sequence[int] = (),
    remove_dependencies: Sequence[int] = (),
) -> Task:
    """Partial update. `version` must be the version the caller read: a stale one is refused, never merged."""
    graph_change = status is not UNSET or parent is not UNSET or add_dependencies or remove_dependencies
    if graph_change:
        task = _graph_write_access(principal=principal, task_id=task_id)
    else:
        task = selectors.task_access(principal=principal, task_id=task_id, write=True, lock=True)
    if version != task.version:
        last = task.events.first()
        by = f" by {last.actor} at {last.at.isoformat()}" if last else ""
        raise TaskError(
            "stale_version",
            f"task #{task.pk} is at version {task.version}, you sent {version}: it was changed{by}; "
            "read it again (task.list) and reapply your change",
            task=task.pk,
            current_version=task.version,
            sent_version=version,
        )
    changes: dict[str, list[Any]] = {}

    def assign(field: str, value: Any) -> None:
        old = getattr(task, field)
        if value != old:
            changes[field] = [_jsonable(old), _jsonable(value)]
            setattr(task, field, value)

    if title is not UNSET:
        assign("title", str(title).strip())
    if description is not UNSET:
        assign("description", description)
    if priority is not UNSET:
        assign("priority", _priority(priority))
    if due_date is not UNSET:
        assign("due_date", _due(due_date))
    if assignee is not UNSET:
        assign("assignee", assignee or "")
    new_labels = list(task.labels) if labels is UNSET else _labels(labels)
    new_labels += [label for label in _labels(add_labels) if label not in new_labels]
    removed = set(_labels(remove_labels))
    assign("labels", [label for label in new_labels if label not in removed])
    if parent is not UNSET and parent != task.parent_id:
        old_parent = task.parent_id
        _set_parent(task=task, parent_id=parent, principal=principal)
        changes["parent"] = [old_parent, parent]
        if _open(task.status):
            if old_parent is not None:
                Task.objects.filter(pk=old_parent).update(open_subtasks=F("open_subtasks") - 1)
            if task.parent_id is not None:
                Task.objects.filter(pk=task.parent_id).update(open_subtasks=F("open_subtasks") + 1)
    for dep_id in remove_dependencies:
        _dependency_remove(task=task, depends_on_id=dep_id)
    if len(set(add_dependencies)) != len(add_dependencies):
        raise TaskError("duplicate_dependency", "add_dependencies: lists a task twice", field="add_dependencies")
    for dep_id in add_dependencies:
        _dependency_add(task=task, depends_on_id=dep_id, principal=principal)
    if add_dependencies:
        changes["add_dependencies"] = list(add_dependencies)
    if remove_dependencies:
        changes["remove_dependencies"] = list(remove_dependencies)
    if status is not UNSET and status != task.status:
        check_transition(task=task, new_status=status)
        changes["status"] = [task.status, status]
        _counters_on_status_change(task, task.status, status)
        task.status = status
    if not changes:
        return task
    _clean(task)
    fields = [f for f in changes if f not in {"add_dependencies", "remove_dependencies"}]
    _bump(task, principal, TaskEvent.Action.UPDATED, changes, fields)
    return task


@transaction.atomic
def task_delete(*, principal: Principal, task_id: int) -> None:
    """Delete a task with its subtasks, edges and history, then repair the project's open counters."""
    task = _graph_write_access(principal=principal, task_id=task_id)
    task.delete()
    task_counters_refresh(project_id=task.project_id)


@dataclass
class NextAction:
    ready: list[tuple[Task, str]]
    claimed: Task | None
    message: str


def task_next_action(
    *, principal: Principal, project: str | None = None, limit: int = 5, claim: bool = False
) -> NextAction:
    """The ready tasks in rank order with the reason each is ready. With claim=True, atomically assign the top one
    to the caller and start it: rows are taken with FOR UPDATE SKIP LOCKED, so concurrent callers get distinct
    tasks (or none) and never wait on each other."""
    if not 1 <= limit <= 100:
        raise TaskError("invalid_argument", "limit: give between 1 and 100", field="limit")
    if project is not None:
        projects = [selectors.project_access(principal=principal, key=project, write=claim)]
    else:
        projects = list(selectors.projects_visible(principal=principal, write=claim))
    project_ids = [p.pk for p in projects]
    if not claim:
        tasks = selectors.ready_tasks(projects=projects, me=principal.id, limit=limit)
        reasons = selectors.ready_reasons(tasks, me=principal.id)
        message = f"{len(tasks)} ready task(s)" if tasks else selectors.not_ready_summary(project_ids=project_ids)
        return NextAction(ready=[(t, reasons[t.pk]) for t in tasks], claimed=None, message=message)
    with transaction.atomic():
        locked = selectors.ready_tasks(projects=projects, me=principal.id, limit=1, lock=True)
        if not locked:
            return NextAction(ready=[], claimed=None, message=selectors.not_ready_summary(project_ids=project_ids))
        task = locked[0]
        reason = selectors.ready_reasons([task], me=principal.id)[task.pk]
        changes = {"status": [task.status, Status.IN_PROGRESS], "assignee": [task.assignee, principal.id]}
        task.status = Status.IN_PROGRESS
        task.assignee = principal.id
        task.claimed_at = timezone.now()
        task.version += 1
        task.save(update_fields=["status", "assignee", "claimed_at", "version", "updated_at"])
        _event(task=task, principal=principal, action=TaskEvent.Action.CLAIMED, changes=changes)
    return NextAction(ready=[(task, reason)], claimed=task, message=f"claimed task #{task.pk} for {principal.id}")
