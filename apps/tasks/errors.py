"""The errors task services raise. A TaskError is a ToolError, so MCP handlers let it through unchanged and the
REST API maps its code to an HTTP status (apps/tasks/api/views.py)."""

from __future__ import annotations

from typing import Any

from apps.gateway.registry import ToolError

# code -> HTTP status for the REST API
HTTP_STATUS = {
    "invalid_argument": 400,
    "forbidden": 403,
    "task_not_found": 404,
    "project_not_found": 404,
    "stale_version": 409,
    "invalid_transition": 409,
    "dependency_unfinished": 409,
    "dependency_cycle": 409,
    "parent_cycle": 409,
    "self_dependency": 409,
    "duplicate_dependency": 409,
    "cross_project": 409,
    "ancestor_dependency": 409,
    "project_exists": 409,
}


class TaskError(ToolError):
    def __init__(self, code: str, message: str, **data: Any) -> None:
        super().__init__(code, message, data=data)

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 400)
