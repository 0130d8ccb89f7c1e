"""MCP tools of the tasks capability. Handlers translate arguments and call services/selectors; the gateway has
already checked the tool permission, validated the arguments against input_schema and will audit the call."""

from __future__ import annotations

from typing import Any

from apps.gateway.registry import Annotations, ToolContext, tool
from apps.tasks import graph, selectors, services
from apps.tasks.schemas import DATE, IDS, LABELS, PRIORITY, PROJECT_KEY, STATUS, TASK, TASK_ID, task_dict

_WRITE = Annotations(read_only=False, destructive=False, idempotent=False, open_world=False)
_READ = Annotations(read_only=True, destructive=False, idempotent=True, open_world=False)


@tool(
    name="task.create",
    title="Create a task",
    description=(
        "Create a task in a project you can write (default: your personal project). Optional parent (subtask) and "
        "depends_on (task ids in the same project; cycles are refused naming the cycle)."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "project": PROJECT_KEY,
            "title": {"type": "string", "minLength": 1, "maxLength": 300},
            "description": {"type": "string", "maxLength": 20000},
            "status": {"type": "string", "enum": ["todo", "in_progress", "blocked", "deferred"]},
            "priority": PRIORITY,
            "due_date": DATE,
            "assignee": {"type": "string", "maxLength": 200},
            "labels": LABELS,
            "parent": TASK_ID,
            "depends_on": IDS,
        },
        "required": ["title"],
        "additionalProperties": False,
    },
    output_schema={"type": "object", "properties": {"task": TASK}, "required": ["task"]},
    annotations=_WRITE,
)
def task_create(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    task = services.task_create(principal=ctx.principal, **args)
    return {"task": task_dict(task)}


@tool(
    name="task.update",
    title="Update a task",
    description=(
        "Change some fields of a task. `version` is the version you read: if someone changed the task since, the "
        "update is refused (stale_version) and nothing is written. Status changes follow the transition rules; "
        "in_progress and done need every dependency done or cancelled."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "id": TASK_ID,
            "version": {"type": "integer", "minimum": 1},
            "title": {"type": "string", "minLength": 1, "maxLength": 300},
            "description": {"type": "string", "maxLength": 20000},
            "status": STATUS,
            "priority": PRIORITY,
            "due_date": DATE,
            "assignee": {"type": ["string", "null"], "maxLength": 200},
            "labels": LABELS,
            "add_labels": LABELS,
            "remove_labels": LABELS,
            "parent": {"type": ["integer", "null"], "minimum": 1},
            "add_dependencies": IDS,
            "remove_dependencies": IDS,
        },
        "required": ["id", "version"],
        "additionalProperties": False,
    },
    output_schema={"type": "object", "properties": {"task": TASK}, "required": ["task"]},
    annotations=_WRITE,
)
def task_update(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    values = dict(args)
    task = services.task_update(principal=ctx.principal, task_id=values.pop("id"), **values)
    return {"task": task_dict(task)}


@tool(
    name="task.list",
    title="List tasks",
    description=(
        "Tasks you can see, filtered by project, status, assignee ('me' for yourself), label, parent, text; "
        "sorted by rank (priority, due date, age), created, updated or due; cursor pagination (pass next_cursor)."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "project": PROJECT_KEY,
            "status": {"type": "array", "items": STATUS, "maxItems": 6},
            "assignee": {"type": "string", "maxLength": 200},
            "label": {"type": "string", "maxLength": 64},
            "parent": TASK_ID,
            "top_level": {"type": "boolean"},
            "text": {"type": "string", "maxLength": 200},
            "sort": {"type": "string", "enum": list(selectors.ORDERINGS)},
            "cursor": {"type": "string", "maxLength": 1000},
            "limit": {"type": "integer", "minimum": 1, "maximum": 200},
        },
        "additionalProperties": False,
    },
    output_schema={
        "type": "object",
        "properties": {"tasks": {"type": "array", "items": TASK}, "next_cursor": {"type": ["string", "null"]}},
        "required": ["tasks", "next_cursor"],
    },
    annotations=_READ,
)
def task_list(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    values = dict(args)
    if "sort" in values:
        values["order"] = values.pop("sort")
    page = selectors.task_list(principal=ctx.principal, **values)
    return {"tasks": [task_dict(t) for t in page.tasks], "next_cursor": page.next_cursor}


@tool(
    name="task.dep_graph",
    title="Dependency graph",
    description=(
        "Nodes and edges of a project's (or a subtree's) dependency graph, each node with its state (ready, blocked, "
        "in_progress, done, cancelled, deferred) and why. Optional Mermaid and DOT renderings."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "project": PROJECT_KEY,
            "root": TASK_ID,
            "format": {"type": "array", "items": {"type": "string", "enum": ["mermaid", "dot"]}, "maxItems": 2},
        },
        "additionalProperties": False,
    },
    output_schema={
        "type": "object",
        "properties": {
            "nodes": {"type": "array"},
            "edges": {"type": "array"},
            "mermaid": {"type": "string"},
            "dot": {"type": "string"},
        },
        "required": ["nodes", "edges"],
    },
    annotations=_READ,
)
def task_dep_graph(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    result = selectors.dep_graph(principal=ctx.principal, project=args.get("project"), root=args.get("root"))
    out = graph.graph_json(result)
    formats = set(args.get("format") or ())
    if "mermaid" in formats:
        out["mermaid"] = graph.mermaid(result)
    if "dot" in formats:
        out["dot"] = graph.dot(result)
    return out


@tool(
    name="task.next_action",
    title="Next ready tasks",
    description=(
        "The ready tasks (todo, every dependency done or cancelled, no open subtask, no blocked ancestor), ranked by "
        "priority, due date and age, each with the reason it is ready. claim=true atomically assigns the top one to "
        "you and sets it in_progress: concurrent agents never get the same task."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "project": PROJECT_KEY,
            "limit": {"type": "integer", "minimum": 1, "maximum": 100},
            "claim": {"type": "boolean"},
        },
        "additionalProperties": False,
    },
    output_schema={
        "type": "object",
        "properties": {
            "ready": {"type": "array"},
            "claimed": {"type": ["object", "null"]},
            "message": {"type": "string"},
        },
        "required": ["ready", "claimed", "message"],
    },
    annotations=Annotations(read_only=False, destructive=False, idempotent=False, open_world=False),
)
def task_next_action(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    result = services.task_next_action(principal=ctx.principal, **args)
    return next_action_dict(result)


def next_action_dict(result: services.NextAction) -> dict[str, Any]:
    return {
        "ready": [{**task_dict(task), "reason": reason} for task, reason in result.ready],
        "claimed": task_dict(result.claimed) if result.claimed else None,
        "message": result.message,
    }
