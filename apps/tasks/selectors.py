"""Reads: access checks, task lookups, listing with keyset cursors, readiness and the dependency graph."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core import signing
from django.db import connection
from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Coalesce

from apps.accounts.principal import Principal
from apps.tasks.errors import TaskError
from apps.tasks.models import RESOLVED, Access, Dependency, Project, ProjectGrant, Status, Task

ADMIN_ROLE = "admin"
_FAR_FUTURE = dt.date(9999, 12, 31)


# ------------------------------------------------------------------------------------------------- access
def _subjects(principal: Principal) -> list[str]:
    return [principal.id, "*", *(f"role:{role}" for role in sorted(principal.roles))]


def project_access_level(*, principal: Principal, project: Project) -> str | None:
    """ "write", "read" or None. Admins and the owner write; grants to the principal, its roles or "*" add the rest."""
    if ADMIN_ROLE in principal.roles or project.owner == principal.id:
        return Access.WRITE
    levels = set(
        ProjectGrant.objects.filter(project=project, subject__in=_subjects(principal)).values_list("access", flat=True)
    )
    if Access.WRITE in levels:
        return Access.WRITE
    return Access.READ if levels else None


def projects_visible(*, principal: Principal, write: bool = False) -> QuerySet[Project]:
    if ADMIN_ROLE in principal.roles:
        return Project.objects.all()
    grant = Q(grants__subject__in=_subjects(principal))
    if write:
        grant &= Q(grants__access=Access.WRITE)
    ids = Project.objects.filter(Q(owner=principal.id) | grant).values("id")
    return Project.objects.filter(id__in=ids)


def project_access(*, principal: Principal, key: str, write: bool = False) -> Project:
    project = Project.objects.filter(key=key).first()
    level = project and project_access_level(principal=principal, project=project)
    if project is None or level is None:
        raise TaskError(
            "project_not_found",
            f"project {key!r} does not exist or you have no access to it: ask its owner for a grant",
            project=key,
        )
    if write and level != Access.WRITE:
        raise TaskError(
            "forbidden",
            f"project {key!r}: you have read access only; changing its tasks needs a write grant from its owner",
            project=key,
        )
    return project


def task_access(*, principal: Principal, task_id: int, write: bool = False, lock: bool = False) -> Task:
    """The task, if the principal may see it (and change it, with write=True). lock=True takes the row lock:
    the caller must be inside a transaction."""
    queryset = Task.objects.select_related("project")
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    task = queryset.filter(pk=task_id).first()
    level = task and project_access_level(principal=principal, project=task.project)
    if task is None or level is None:
        raise TaskError("task_not_found", f"task #{task_id} does not exist or is not visible to you", task=task_id)
    if write and level != Access.WRITE:
        raise TaskError(
            "forbidden",
            f"task #{task_id}: you have read access only to project {task.project.key!r}; changing it needs a write "
            "grant from the project owner",
            task=task_id,
            project=task.project.key,
        )
    return task


# ------------------------------------------------------------------------------------------------- listing
ORDERINGS: dict[str, list[tuple[str, bool]]] = {
    # name -> [(annotated column, descending)]; the last column is unique so keyset cursors are exact
    "rank": [("priority", True), ("due_key", False), ("created_at", False), ("id", False)],
    "created": [("created_at", False), ("id", False)],
    "-created": [("created_at", True), ("id", True)],
    "updated": [("updated_at", False), ("id", False)],
    "-updated": [("updated_at", True), ("id", True)],
    "due": [("due_key", False), ("id", False)],
}


_CURSOR_SALT = "apps.tasks.task_list.cursor"


def _encode_cursor(order: str, values: Sequence[Any]) -> str:
    """Signed, so a cursor's values are always ours: a crafted one cannot reach the query as a wrong-typed bound."""
    plain = [v.isoformat() if isinstance(v, dt.date | dt.datetime) else v for v in values]
    return signing.dumps([order, plain], salt=_CURSOR_SALT)


def _decode_cursor(cursor: str, order: str) -> list[Any]:
    try:
        cursor_order, values = signing.loads(cursor, salt=_CURSOR_SALT)
    except (signing.BadSignature, ValueError, TypeError):
        raise TaskError(
            "invalid_argument", "cursor: not a cursor returned by task.list; omit it to start over"
        ) from None
    columns = ORDERINGS[order]
    if cursor_order != order or not isinstance(values, list) or len(values) != len(columns):
        raise TaskError("invalid_argument", f"cursor: it was made for sort {cursor_order!r}, not {order!r}")
    return values


def _after(columns: list[tuple[str, bool]], values: list[Any]) -> Q:
    condition = Q()
    for index in range(len(columns) - 1, -1, -1):
        name, descending = columns[index]
        step = Q(**{f"{name}__{'lt' if descending else 'gt'}": values[index]})
        if index < len(columns) - 1:
            step |= Q(**{name: values[index]}) & condition
        condition = step
    return condition


@dataclass
class TaskPage:
    tasks: Sequence[Task]
    next_cursor: str | None


def task_list(
    *,
    principal: Principal,
    project: str | None = None,
    status: Sequence[str] | None = None,
    assignee: str | None = None,
    label: str | None = None,
    parent: int | None = None,
    top_level: bool = False,
    text: str | None = None,
    order: str = "rank",
    cursor: str | None = None,
    limit: int = 50,
) -> TaskPage:
    if order not in ORDERINGS:
        raise TaskError("invalid_argument", f"sort: {order!r} is not one of {', '.join(ORDERINGS)}")
    if not 1 <= limit <= 200:
        raise TaskError("invalid_argument", "limit: give between 1 and 200")
    if status and (unknown := set(status) - set(Status.values)):
        raise TaskError("invalid_argument", f"status: unknown {sorted(unknown)}; use {', '.join(Status.values)}")
    if project is not None:
        queryset = Task.objects.filter(project=project_access(principal=principal, key=project))
    else:
        queryset = Task.objects.filter(project__in=projects_visible(principal=principal))
    if status:
        queryset = queryset.filter(status__in=status)
    if assignee is not None:
        queryset = queryset.filter(assignee=principal.id if assignee == "me" else assignee)
    if label:
        queryset = queryset.filter(labels__contains=[label])
    if parent is not None:
        queryset = queryset.filter(parent_id=task_access(principal=principal, task_id=parent).pk)
    elif top_level:
        queryset = queryset.filter(parent__isnull=True)
    if text:
        queryset = queryset.filter(Q(title__icontains=text) | Q(description__icontains=text))
    columns = ORDERINGS[order]
    queryset = queryset.annotate(due_key=Coalesce("due_date", Value(_FAR_FUTURE))).select_related("project")
    if cursor:
        queryset = queryset.filter(_after(columns, _decode_cursor(cursor, order)))
    queryset = queryset.order_by(*[f"-{name}" if desc else name for name, desc in columns])
    rows = list(queryset[: limit + 1])
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = _encode_cursor(order, [getattr(last, name) for name, _ in columns])
    return TaskPage(tasks=rows, next_cursor=next_cursor)


def task_events(*, task: Task, limit: int = 50) -> list[dict[str, Any]]:
    return [
        {"actor": e.actor, "actor_name": e.actor_name, "action": e.action, "changes": e.changes, "at": e.at.isoformat()}
        for e in task.events.all()[:limit]
    ]


# ------------------------------------------------------------------------------------------------- graph queries
def task_ancestors(task_id: int) -> list[int]:
    """Ids of the task's ancestors, nearest first (recursive CTE up the parent chain)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE anc(id, parent_id, depth) AS (
                SELECT id, parent_id, 0 FROM tasks_task WHERE id = %s
                UNION ALL
                SELECT t.id, t.parent_id, anc.depth + 1 FROM tasks_task t JOIN anc ON t.id = anc.parent_id
            )
            SELECT id FROM anc WHERE depth > 0 ORDER BY depth
            """,
            [task_id],
        )
        return [row[0] for row in cursor.fetchall()]


def dependency_path(*, start: int, goal: int) -> list[int] | None:
    """A chain start -> ... -> goal following depends_on edges, or None when goal is not reachable.

    Reachability is one recursive CTE with UNION (each task visited once, so it is bounded by the project's size);
    the path is rebuilt from the reached subgraph only when there is one.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE reach(id) AS (
                SELECT %s::bigint
                UNION
                SELECT d.depends_on_id FROM tasks_dependency d JOIN reach ON d.task_id = reach.id
            )
            SELECT d.task_id, d.depends_on_id FROM tasks_dependency d
            WHERE d.task_id IN (SELECT id FROM reach) AND EXISTS (SELECT 1 FROM reach WHERE id = %s)
            """,
            [start, goal],
        )
        edges = cursor.fetchall()
    if not edges and start != goal:
        return None
    adjacency: dict[int, list[int]] = {}
    for source, target in edges:
        adjacency.setdefault(source, []).append(target)
    previous: dict[int, int | None] = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            if node == goal:
                path = [node]
                while (before := previous[path[-1]]) is not None:
                    path.append(before)
                return path[::-1]
            for target in adjacency.get(node, ()):
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    return None


# ------------------------------------------------------------------------------------------------- readiness
_ANCESTOR_BLOCKING = ", ".join(f"'{s}'" for s in (Status.BLOCKED, Status.DEFERRED, Status.CANCELLED))

READY_SQL = f"""
SELECT t.* FROM tasks_task t
WHERE t.project_id = ANY(%(projects)s)
  AND t.status = 'todo' AND t.open_dependencies = 0 AND t.open_subtasks = 0
  AND (t.assignee = '' OR t.assignee = %(me)s)
  AND (t.parent_id IS NULL OR NOT EXISTS (
      WITH RECURSIVE anc(id, parent_id, status, open_dependencies) AS (
          SELECT p.id, p.parent_id, p.status, p.open_dependencies FROM tasks_task p WHERE p.id = t.parent_id
          UNION ALL
          SELECT p.id, p.parent_id, p.status, p.open_dependencies FROM tasks_task p JOIN anc ON p.id = anc.parent_id
      )
      SELECT 1 FROM anc WHERE anc.status IN ({_ANCESTOR_BLOCKING}) OR anc.open_dependencies > 0))
ORDER BY t.priority DESC, t.due_date ASC NULLS LAST, t.created_at, t.id
LIMIT %(limit)s
"""  # noqa: S608 - only constant status names are interpolated


def ready_tasks(*, projects: Sequence[Project], me: str, limit: int, lock: bool = False) -> list[Task]:
    """Ready tasks in rank order. A task is ready when it is todo, unassigned or assigned to `me`, every dependency
    is done or cancelled, it has no open subtask, and no ancestor is blocked, deferred, cancelled or waiting on a
    dependency. lock=True claims rows with FOR UPDATE SKIP LOCKED (caller holds a transaction)."""
    by_id = {p.pk: p for p in projects}
    sql = READY_SQL + (" FOR UPDATE OF t SKIP LOCKED" if lock else "")
    tasks = list(Task.objects.raw(sql, {"projects": list(by_id), "me": me, "limit": limit}))
    for task in tasks:
        task.project = by_id[task.project_id]
    return tasks


def ready_reasons(tasks: Iterable[Task], *, me: str) -> dict[int, str]:
    """Why each task is ready, naming its dependencies (and a cancelled one explicitly)."""
    tasks = list(tasks)
    deps: dict[int, list[tuple[int, str]]] = {}
    for task_id, dep_id, dep_status in Dependency.objects.filter(task__in=tasks).values_list(
        "task_id", "depends_on_id", "depends_on__status"
    ):
        deps.setdefault(task_id, []).append((dep_id, dep_status))
    parents = dict(Task.objects.filter(pk__in=[t.parent_id for t in tasks if t.parent_id]).values_list("id", "status"))
    reasons = {}
    for task in tasks:
        parts = []
        own = sorted(deps.get(task.pk, []))
        if own:
            listed = ", ".join(f"#{dep} {status}" for dep, status in own)
            parts.append(f"all {len(own)} dependencies resolved ({listed})")
        else:
            parts.append("no dependencies")
        if task.parent_id:
            parts.append(f"parent #{task.parent_id} is {parents.get(task.parent_id, '?')} and nothing above it blocks")
        if task.assignee == me:
            parts.append("assigned to you")
        parts.append(f"priority {task.get_priority_display()}" + (f", due {task.due_date}" if task.due_date else ""))
        reasons[task.pk] = "; ".join(parts)
    return reasons


def not_ready_summary(*, project_ids: Sequence[int]) -> str:
    todo = Task.objects.filter(project_id__in=project_ids, status=Status.TODO)
    total = todo.count()
    if not total:
        return "nothing ready: no todo task in the projects you can see"
    assigned = todo.exclude(assignee="").count()
    return (
        f"nothing ready: {total} todo task(s), of which {assigned} assigned to others; the rest wait on an "
        "unresolved dependency, an open subtask or a blocked/deferred ancestor (see task.dep_graph)"
    )


# ------------------------------------------------------------------------------------------------- dependency graph
@dataclass
class GraphNode:
    id: int
    title: str
    status: str
    priority: int
    assignee: str
    parent: int | None
    state: str = ""
    blocked_by: list[int] = field(default_factory=list)
    why: str = ""
    external: bool = False


@dataclass
class Graph:
    nodes: list[GraphNode]
    edges: list[tuple[int, int]]  # (task, depends_on)


def _states(nodes: dict[int, GraphNode], edges: list[tuple[int, int]], children_open: set[int]) -> None:
    """Set state/blocked_by/why with the same rule as READY_SQL (assignment aside)."""
    unresolved: dict[int, list[int]] = {}
    for task_id, dep_id in edges:
        dep = nodes.get(dep_id)
        if dep is not None and dep.status not in RESOLVED:
            unresolved.setdefault(task_id, []).append(dep_id)
    blocking_memo: dict[int, int | None] = {}

    def blocking_ancestor(node: GraphNode) -> int | None:
        chain = []
        current = node.parent
        found: int | None = None
        while current is not None and current in nodes:
            if current in blocking_memo:
                found = blocking_memo[current]
                break
            chain.append(current)
            parent = nodes[current]
            if parent.status in (Status.BLOCKED, Status.DEFERRED, Status.CANCELLED) or current in unresolved:
                found = current
                break
            current = parent.parent
        for item in chain:
            blocking_memo[item] = found
        return found

    for node in nodes.values():
        node.blocked_by = sorted(unresolved.get(node.id, []))
        if node.status != Status.TODO:
            node.state = node.status
            node.why = f"status is {node.status}"
        elif node.blocked_by:
            node.state = "blocked"
            node.why = "waits on " + ", ".join(f"#{d}" for d in node.blocked_by)
        elif node.id in children_open:
            node.state = "blocked"
            node.why = "has open subtasks"
        elif (ancestor := blocking_ancestor(node)) is not None:
            node.state = "blocked"
            node.why = f"ancestor #{ancestor} is blocked"
        else:
            node.state = "ready"
            node.why = "every dependency resolved"


def task_descendants(task_id: int) -> list[int]:
    """Ids of the task and everything under it (recursive CTE down the parent links)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE sub(id) AS (
                SELECT %s::bigint
                UNION ALL
                SELECT t.id FROM tasks_task t JOIN sub ON t.parent_id = sub.id
            )
            SELECT id FROM sub
            """,
            [task_id],
        )
        return [row[0] for row in cursor.fetchall()]


_NODE_COLUMNS = "id, title, status, priority, assignee, parent_id"


def _fetch(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def dep_graph(*, principal: Principal, project: str | None = None, root: int | None = None) -> Graph:
    """The dependency graph of a project, or of the subtree under `root` (root plus its descendants, with the
    tasks they are linked to outside it marked external)."""
    if (project is None) == (root is None):
        raise TaskError("invalid_argument", "give exactly one of project (a key) or root (a task id)")
    if root is None:
        project_id = project_access(principal=principal, key=project or "").pk
        rows = _fetch(f"SELECT {_NODE_COLUMNS} FROM tasks_task WHERE project_id = %s", [project_id])  # noqa: S608
        edges = _fetch(
            "SELECT d.task_id, d.depends_on_id FROM tasks_dependency d JOIN tasks_task t ON t.id = d.task_id "
            "WHERE t.project_id = %s",
            [project_id],
        )
        every = {row[0]: GraphNode(*row) for row in rows}
        children_open = {n.parent for n in every.values() if n.parent is not None and n.status not in RESOLVED}
        _states(every, edges, children_open)  # type: ignore[arg-type]
        return Graph(nodes=list(every.values()), edges=edges)  # type: ignore[arg-type]
    task_access(principal=principal, task_id=root)
    subtree = task_descendants(root)
    scope = subtree + task_ancestors(root)  # ancestors decide whether the subtree is blocked
    edges = _fetch(
        "SELECT task_id, depends_on_id FROM tasks_dependency WHERE task_id = ANY(%s) OR depends_on_id = ANY(%s)",
        [scope, subtree],
    )
    wanted = set(scope) | {x for edge in edges for x in edge}
    rows = _fetch(f"SELECT {_NODE_COLUMNS} FROM tasks_task WHERE id = ANY(%s)", [sorted(wanted)])  # noqa: S608
    every = {row[0]: GraphNode(*row) for row in rows}
    inside = set(subtree)
    children_open = {n.parent for n in every.values() if n.parent in inside and n.status not in RESOLVED}
    _states(every, edges, children_open)  # type: ignore[arg-type]
    kept_edges = [(a, b) for a, b in edges if a in inside or b in inside]
    outside = {x for edge in kept_edges for x in edge} - inside
    for node_id in outside:  # their own context was not loaded: report their status only
        node = every[node_id]
        node.external, node.state, node.blocked_by, node.why = True, node.status, [], "outside this subtree"
    return Graph(nodes=[every[i] for i in sorted(inside | outside)], edges=kept_edges)  # type: ignore[arg-type]
