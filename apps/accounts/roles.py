"""The role catalog seeded by migration, and the rules for a tool grant.

Kept free of model imports so the data migration can seed from the same table with historical models.
"""

from __future__ import annotations

import re
from typing import Any

# Capabilities whose tools a grant may name (`task.*`) — one per app that declares tools.
CAPABILITIES = ("platform", "task", "memory", "sandbox", "browser", "run")

# A grant is `*`, `<capability>.*` or an exact tool name (`task.create`, SEP-986 charset).
GRANT_RE = re.compile(r"^(\*|[a-z][a-z0-9_-]*\.\*|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+)$")

# name -> (description, requests per minute per principal or None for unlimited, grants, per-tool limits)
ROLE_CATALOG: dict[str, dict[str, Any]] = {
    "admin": {
        "description": "Everything, including destructive and platform-wide tools.",
        "requests_per_minute": None,
        "grants": ["*"],
        "tool_limits": {},
    },
    "operator": {
        "description": "Runs and repairs the platform's work: every capability tool.",
        "requests_per_minute": 6000,
        "grants": ["platform.whoami", "task.*", "memory.*", "sandbox.*", "browser.*", "run.*"],
        "tool_limits": {"sandbox.create": 120},
    },
    "agent": {
        "description": "An automated MCP client doing work: tasks, memory, sandboxes, browser, runs.",
        "requests_per_minute": 3000,
        "grants": ["platform.whoami", "task.*", "memory.*", "sandbox.*", "browser.*", "run.*"],
        "tool_limits": {"sandbox.create": 30, "browser.open": 60},
    },
    "support": {
        "description": "Helps users: reads tasks, memory timelines and runs; no side effects on sandboxes or pages.",
        "requests_per_minute": 600,
        "grants": [
            "platform.whoami",
            "task.list",
            "task.dep_graph",
            "task.next_action",
            "memory.search",
            "memory.timeline",
            "run.resume",
        ],
        "tool_limits": {},
    },
    "viewer": {
        "description": "Read-only: who am I and what tasks exist.",
        "requests_per_minute": 300,
        "grants": ["platform.whoami", "task.list", "task.dep_graph"],
        "tool_limits": {},
    },
}


def grant_error(pattern: str) -> str | None:
    """Why `pattern` is not a valid grant, or None when it is."""
    if not GRANT_RE.match(pattern):
        return (
            f"{pattern!r} is not a tool grant: use '*', '<capability>.*' (e.g. 'task.*') or an exact tool name "
            f"(e.g. 'task.create')"
        )
    capability = pattern.split(".", 1)[0]
    if pattern != "*" and capability not in CAPABILITIES:
        return f"{pattern!r} names no known capability: use one of {', '.join(CAPABILITIES)}"
    return None


def seed_roles(role_model: Any, grant_model: Any, limit_model: Any) -> None:
    """Create the catalog roles that are missing (existing roles, edited by staff, are left as they are)."""
    for name, spec in ROLE_CATALOG.items():
        role, created = role_model.objects.get_or_create(
            name=name,
            defaults={
                "description": spec["description"],
                "requests_per_minute": spec["requests_per_minute"],
                "is_builtin": True,
            },
        )
        if not created:
            continue
        grant_model.objects.bulk_create([grant_model(role=role, pattern=p) for p in spec["grants"]])
        limit_model.objects.bulk_create(
            [limit_model(role=role, tool=t, requests_per_minute=n) for t, n in spec["tool_limits"].items()]
        )
