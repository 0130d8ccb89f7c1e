"""The gateway's own tools."""

from __future__ import annotations

from typing import Any

from apps.gateway.registry import Annotations, ToolContext, tool

WHOAMI_OUTPUT = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "kind": {"type": "string"},
        "identity_source": {"type": "string"},
        "roles": {"type": "array", "items": {"type": "string"}},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "tools": {"type": "array", "items": {"type": "string"}, "description": "Tools this caller may call."},
    },
    "required": ["id", "name", "kind", "identity_source", "roles", "scopes", "tools"],
    "additionalProperties": False,
}


@tool(
    name="platform.whoami",
    title="Who am I",
    description="Your identity as the platform sees it: principal id, roles, scopes and the tools you may call.",
    input_schema={"type": "object", "properties": {}, "additionalProperties": False},
    output_schema=WHOAMI_OUTPUT,
    permission="platform.whoami",
    annotations=Annotations(read_only=True, destructive=False, idempotent=True, open_world=False),
)
async def whoami(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    from apps.gateway.protocol import visible_tools

    principal = ctx.principal
    return {
        "id": principal.id,
        "name": principal.name,
        "kind": principal.kind,
        "identity_source": principal.identity_source,
        "roles": sorted(principal.roles),
        "scopes": sorted(principal.scopes),
        "tools": [t.name for t in await visible_tools(principal)],
    }
