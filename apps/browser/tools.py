"""MCP tools of the browser capability. Queued on the `browser` queue; handlers call apps.browser.services."""

from __future__ import annotations

from typing import Any

from apps.browser import services
from apps.browser.pages import ACTIONS
from apps.gateway.registry import Annotations, ToolContext, tool

# Every browser tool runs in a browser worker (its session's pages live there).
_QUEUED: dict[str, Any] = {"execution": "queued", "queue": "browser", "task_support": "optional", "timeout_s": 60.0}
_SESSION = {"type": "string", "minLength": 1, "maxLength": 64, "description": "Session id from browser.open."}
_BLOCKS = {
    "type": "array",
    "description": "Requests the domain policy refused during this call (each also audited).",
    "items": {"type": "object"},
}
_PAGE = {
    "session": {"type": "string"},
    "url": {"type": "string"},
    "title": {"type": "string"},
    "snapshot": {"type": "string", "description": "Accessibility snapshot; elements carry [ref=eN]."},
    "truncated": {"type": "boolean"},
    "refs": {"type": "integer"},
    "blocks": _BLOCKS,
}


@tool(
    name="browser.open",
    title="Open a web page",
    description=(
        "Open a URL in an isolated browser session (a new one unless `session` is given) and return the final URL, "
        "title, HTTP status and an accessibility snapshot whose elements carry refs for browser.act. Requests are "
        "checked against your role's domain policy; internal addresses are refused."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "url": {"type": "string", "minLength": 1, "maxLength": 4096, "description": "Absolute http(s) URL."},
            "session": _SESSION,
        },
        "required": ["url"],
        "additionalProperties": False,
    },
    output_schema={
        "type": "object",
        "properties": {**_PAGE, "status": {"type": ["integer", "null"]}},
        "required": ["session", "url", "title", "snapshot"],
    },
    annotations=Annotations(read_only=False, destructive=False, idempotent=False, open_world=True),
    rerun="safe",
    **_QUEUED,
)
def browser_open(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    with services.cancellable(ctx.cancel_probe()):
        return services.browser_open(
            principal=ctx.principal, url=args["url"], session_id=args.get("session"), job_id=ctx.job_id
        )


@tool(
    name="browser.act",
    title="Act on a page",
    description=(
        "Click, type, fill, select, press, hover, scroll, wait, go back/forward (or close the session) on the page, "
        "addressing elements by `ref` from the latest snapshot or by `role` + `name`. A ref from an older snapshot "
        "is refused (stale_ref). Returns the new snapshot."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "session": _SESSION,
            "action": {"enum": [*ACTIONS, "close"]},
            "ref": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,32}$"},
            "role": {"type": "string", "maxLength": 64},
            "name": {"type": "string", "maxLength": 512},
            "text": {"type": "string", "maxLength": 20000, "description": "type/fill text; wait: text to wait for."},
            "values": {"type": "array", "items": {"type": "string"}, "maxItems": 100, "description": "select options"},
            "key": {"type": "string", "maxLength": 64, "description": "press: e.g. Enter, Control+A"},
            "direction": {"enum": ["up", "down"]},
            "amount": {"type": "integer", "minimum": 1, "maximum": 20000},
            "ms": {"type": "integer", "minimum": 0, "maximum": 30000},
        },
        "required": ["session", "action"],
        "additionalProperties": False,
    },
    output_schema={"type": "object", "properties": _PAGE, "required": ["session"]},
    annotations=Annotations(read_only=False, destructive=True, idempotent=False, open_world=True),
    rerun="never",
    **_QUEUED,
)
def browser_act(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    with services.cancellable(ctx.cancel_probe()):
        return services.browser_act(
            principal=ctx.principal, session_id=args["session"], args=_rest(args), job_id=ctx.job_id
        )


@tool(
    name="browser.extract",
    title="Extract from a page",
    description=(
        "Read the current page: readable text, markdown, links, tables, the accessibility snapshot, a screenshot "
        "(stored as an artifact), and/or structured data: CSS selectors per field, coerced and checked against "
        "the JSON Schema you give."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "session": _SESSION,
            "what": {
                "type": "array",
                "items": {"enum": ["text", "markdown", "links", "tables", "snapshot", "screenshot"]},
                "uniqueItems": True,
                "default": ["text"],
            },
            "selector": {"type": "string", "maxLength": 1000, "description": "Limit text/links/tables to this CSS."},
            "max_chars": {"type": "integer", "minimum": 100, "maximum": 200000},
            "full_page": {"type": "boolean"},
            "structured": {
                "type": "object",
                "properties": {
                    "schema": {"type": "object", "description": "JSON Schema of the object to return."},
                    "fields": {
                        "type": "object",
                        "description": "field → CSS selector, or {selector, attribute}. Array-typed fields get all.",
                        "additionalProperties": {
                            "oneOf": [
                                {"type": "string", "minLength": 1},
                                {
                                    "type": "object",
                                    "properties": {
                                        "selector": {"type": "string", "minLength": 1},
                                        "attribute": {"type": "string"},
                                    },
                                    "required": ["selector"],
                                    "additionalProperties": False,
                                },
                            ]
                        },
                    },
                },
                "required": ["schema", "fields"],
                "additionalProperties": False,
            },
        },
        "required": ["session"],
        "additionalProperties": False,
    },
    annotations=Annotations(read_only=True, destructive=False, idempotent=True, open_world=True),
    rerun="safe",
    **_QUEUED,
)
def browser_extract(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    with services.cancellable(ctx.cancel_probe()):
        return services.browser_extract(
            principal=ctx.principal, session_id=args["session"], args=_rest(args), job_id=ctx.job_id
        )


@tool(
    name="browser.trace",
    title="Record a Playwright trace",
    description=(
        "Start or stop a Playwright trace of the session. `stop` stores the trace zip in artifact storage and "
        "returns where to fetch it (open it with `playwright show-trace` or trace.playwright.dev)."
    ),
    input_schema={
        "type": "object",
        "properties": {"session": _SESSION, "action": {"enum": ["start", "stop"]}},
        "required": ["session", "action"],
        "additionalProperties": False,
    },
    annotations=Annotations(read_only=False, destructive=False, idempotent=False, open_world=False),
    rerun="safe",
    **_QUEUED,
)
def browser_trace(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    with services.cancellable(ctx.cancel_probe()):
        return services.browser_trace(
            principal=ctx.principal, session_id=args["session"], action=args["action"], job_id=ctx.job_id
        )


def _rest(args: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if k != "session"}
