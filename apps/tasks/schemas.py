"""The JSON shape of a task, shared by the MCP tools and the REST API, and the JSON Schema fragments the tools
declare."""

from __future__ import annotations

from typing import Any

from apps.tasks.models import Priority, Status, Task


def task_dict(task: Task) -> dict[str, Any]:
    return {
        "id": task.pk,
        "project": task.project.key,
        "title": task.title,
        "description": task.description,
        "status": task.status,
        "priority": task.get_priority_display(),
        "due_date": task.due_date.isoformat() if task.due_date else None,
        "assignee": task.assignee or None,
        "labels": list(task.labels),
        "parent": task.parent_id,
        "version": task.version,
        "created_by": task.created_by,
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
    }


TASK_ID = {"type": "integer", "minimum": 1}
STATUS = {"type": "string", "enum": Status.values}
PRIORITY = {"type": "string", "enum": [label for _, label in Priority.choices]}
DATE = {"type": ["string", "null"], "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
LABELS = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 64}, "maxItems": 50}
IDS = {"type": "array", "items": TASK_ID, "maxItems": 200}
PROJECT_KEY = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[-a-zA-Z0-9_]+$"}

TASK = {
    "type": "object",
    "properties": {
        "id": TASK_ID,
        "project": {"type": "string"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "status": STATUS,
        "priority": PRIORITY,
        "due_date": {"type": ["string", "null"]},
        "assignee": {"type": ["string", "null"]},
        "labels": {"type": "array", "items": {"type": "string"}},
        "parent": {"type": ["integer", "null"]},
        "version": {"type": "integer"},
        "created_by": {"type": "string"},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
    },
    "required": ["id", "project", "title", "status", "priority", "version"],
}
