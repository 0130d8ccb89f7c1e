"""Generated references: docs/tools.md from the registry, docs/errors.md from the error catalog."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings

from apps.gateway import errors
from apps.gateway.registry import Tool, registry

TOOLS_MD = Path(settings.BASE_DIR) / "docs" / "tools.md"
ERRORS_MD = Path(settings.BASE_DIR) / "docs" / "errors.md"

_COMMON_ERRORS = (
    "`invalid_arguments`, `rate_limited`, `idempotency_conflict`, `idempotency_in_progress`, `tool_disabled`, "
    "`tool_failed`, `timeout`, `cancelled` (results with `isError`); `permission_denied` (JSON-RPC 40300)"
)


def _schema_block(schema: dict | None) -> str:
    if schema is None:
        return "_none declared_ (the result is free-form)\n"
    return "```json\n" + json.dumps(schema, indent=2, sort_keys=True) + "\n```\n"


def _args_table(tool: Tool) -> str:
    props = tool.input_schema.get("properties", {})
    if not props:
        return "_no arguments_\n"
    required = set(tool.input_schema.get("required", []))
    rows = ["| argument | type | required | description |", "|---|---|---|---|"]
    for name, spec in props.items():
        kind = spec.get("type", "any")
        if isinstance(kind, list):
            kind = " or ".join(kind)
        description = str(spec.get("description", "")).replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {kind} | {'yes' if name in required else 'no'} | {description} |")
    return "\n".join(rows) + "\n"


def tools_markdown() -> str:
    tools = [t for t in registry.all() if not t.name.startswith(("test_", "test."))]  # test-only tools
    parts = [
        "# Tool reference\n",
        "Generated from the tool registry by `manage.py tools_doc`; a test fails when this file is stale.\n",
        f"Every tool can also fail with: {_COMMON_ERRORS} — see [errors.md](errors.md).\n",
        "A queued tool's `rerun` says what happens when the worker running it dies mid-job: `safe` runs it again, "
        "`adopt` runs it again and the retry adopts what the lost attempt did (sandbox.exec: its command, from the "
        "sandbox's exec ledger), `never` fails it with `worker_lost` instead of repeating its effect "
        '([jobs-and-runs.md](jobs-and-runs.md), "Effects at most once").\n',
        "| tool | title | permission | runs | annotations |",
        "|---|---|---|---|---|",
    ]
    for t in tools:
        hints = ", ".join(k for k, v in t.annotations.as_mcp().items() if v)
        runs = "inline" if t.execution == "inline" else f"queued on `{t.queue}`, rerun `{t.rerun}`"
        parts.append(f"| [`{t.name}`](#{t.name.replace('.', '')}) | {t.title} | `{t.permission}` | {runs} | {hints} |")
    parts.append("")
    for t in tools:
        parts += [
            f"## {t.name}\n",
            f"{t.description}\n",
            f"- permission: `{t.permission}`",
            f"- execution: {t.execution}{f' (queue `{t.queue}`)' if t.queue else ''}, timeout {t.timeout_s:g} s, "
            f"retries {t.max_retries}, task support {t.task_support}"
            + (f", rerun `{t.rerun}` (if its worker dies mid-job)" if t.execution == "queued" else ""),
            f"- annotations: `{json.dumps(t.annotations.as_mcp(), sort_keys=True)}`\n",
            "### Arguments\n",
            _args_table(t),
            "### Input schema\n",
            _schema_block(t.input_schema),
            "### Result (structuredContent)\n",
            _schema_block(t.output_schema),
        ]
    return "\n".join(parts).rstrip() + "\n"


def errors_markdown() -> str:
    return (
        "# Error taxonomy\n\n"
        "Generated from `apps/gateway/errors.py` by `manage.py tools_doc`; a test fails when this file is stale.\n\n"
        "Two kinds of failure reach an MCP client:\n\n"
        "- **jsonrpc**: the request itself failed — a JSON-RPC `error` object `{code, message, data?}`. On the "
        "2026-07-28 wire the HTTP status is the one shown (the spec's MUSTs); on the handshake wire only transport "
        "failures (parse, invalid request, 401, unknown session, 413) change the status, the rest travel in a 200.\n"
        "- **tool**: the tool was reached but could not do its work — a `tools/call` *result* with `isError: true`, "
        "a text content block saying what went wrong and what to do, and "
        "`structuredContent.error = {code, message, …data}` (SEP-1303: the model can read and react).\n\n"
        "JSON-RPC codes -32768..-32000 belong to JSON-RPC and MCP; the platform's own codes (4xxxx) mirror the "
        "HTTP status they correspond to. Tool-level codes are strings; tools add their own (`ToolError(code, …)`), "
        "documented in [tools.md](tools.md).\n\n"
        "Every request — allowed, denied, invalid or failed — is audited with the `name` below as its error code.\n\n"
        + errors.markdown()
        + "\n\nOther statuses: 202 (notification or client response accepted, no body), 403 (bad `Origin`), "
        "405 (GET/DELETE on the 2026-07-28 wire; GET without `Accept: text/event-stream`), 406 (unacceptable "
        "`Accept`), 415 (non-JSON `Content-Type`), 421 (a `Host` not in `ALLOWED_HOSTS`: DNS rebinding).\n"
    )
