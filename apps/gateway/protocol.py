"""MCP methods, shared by both eras: the transport parses and authenticates, this module answers.

`tools/call` runs the request pipeline: RBAC → argument validation → rate limit → idempotency → inline handler
(or the job runtime for queued tools) → output validation. Every step that refuses says why and what to do.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import orjson

from apps.common import jsonvalues
from apps.common.db import releasing
from apps.gateway import errors, idempotency, integrations, ratelimit, schemas, sessions
from apps.gateway.config import HANDSHAKE_VERSIONS, LATEST_HANDSHAKE, MODERN_VERSIONS, SERVER_INFO, Limit, config
from apps.gateway.errors import RpcError
from apps.gateway.registry import Tool, ToolContext, ToolError, registry
from apps.gateway.selectors import tool_overrides

logger = logging.getLogger("mcpplat.gateway")

PROTOCOL_VERSION_META = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
CLIENT_INFO_META = "io.modelcontextprotocol/clientInfo"
LOG_LEVEL_META = "io.modelcontextprotocol/logLevel"
SERVER_INFO_META = "io.modelcontextprotocol/serverInfo"
IDEMPOTENCY_META = "io.mcpplat/idempotencyKey"
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
INSTRUCTIONS = (
    "mcpplat: tools for browser automation, tasks, sandboxes, memory and durable runs. "
    "Call platform.whoami to see who you are and which tools you may call."
)
LIST_TTL_MS = 60_000


@dataclass(frozen=True)
class RawResult:
    """A handler result that is not just structured data (images, audio, embedded resources, MRTR)."""

    result: dict[str, Any]


Emit = Callable[..., Awaitable[None]]  # emit(message, event_id=None): event_id overrides the recorded SSE id


@dataclass(slots=True)
class Call:
    """One JSON-RPC request in flight, with what the pipeline learnt about it (the audit reads it)."""

    era: str  # "legacy" | "modern"
    protocol_version: str
    request_id: Any
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    principal: Any
    client_host: str | None
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    session: sessions.Session | None = None
    progress_token: Any = None
    log_level: str | None = None
    emit: Emit | None = None  # set when the response can stream (SSE)
    cancel_event: asyncio.Event | None = None
    trace_id: str = ""
    stream_id: str = ""  # the SSE stream of this request (handshake era), for resumable event ids
    response_event_id: str | None = None  # the SSE id of the final response, when the pipeline chose it
    # filled in by the pipeline, read by the audit
    tool: str | None = None
    outcome: str = "ok"
    error_code: str | None = None
    detail: str = ""
    job_id: str | None = None
    run_id: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def meta(self) -> dict[str, Any]:
        meta = self.params.get("_meta")
        return meta if isinstance(meta, dict) else {}


class GatewayToolContext(ToolContext):
    """ToolContext for inline tools: progress and log notifications go to this request's SSE stream."""

    def __init__(self, call: Call):
        self.call = call
        self.principal = call.principal
        self.request_id = str(call.request_id)
        self.run_id = call.run_id
        self.job_id = None
        self._last_progress: float | None = None

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        call = self.call
        if call.progress_token is None or call.emit is None:
            return
        if self._last_progress is not None and progress <= self._last_progress:
            raise ValueError(f"progress must increase: {progress} after {self._last_progress}")
        self._last_progress = progress
        params: dict[str, Any] = {"progressToken": call.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await call.emit({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})

    async def log(self, level: str, data: Any, logger_name: str | None = None) -> None:
        call = self.call
        wanted = call.log_level
        if call.emit is None or wanted is None or LOG_LEVELS.index(level) < LOG_LEVELS.index(wanted):
            return
        params: dict[str, Any] = {"level": level, "data": data}
        if logger_name:
            params["logger"] = logger_name
        await call.emit({"jsonrpc": "2.0", "method": "notifications/message", "params": params})

    def cancelled(self) -> bool:
        return self.call.cancel_event is not None and self.call.cancel_event.is_set()

    async def request_client(self, method: str, params: dict[str, Any], timeout_s: float = 60.0) -> dict[str, Any]:
        """Handshake wire only: a server-to-client request (sampling, elicitation, roots) on this call's stream."""
        call = self.call
        if call.era != "legacy" or call.emit is None or call.session is None:
            raise ToolError("no_back_channel", f"{method} needs a handshake-era session and an SSE response stream")
        rid = f"srv-{uuid.uuid4().hex}"
        await call.emit({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        reply = await sessions.reply_wait(call.session.id, rid, timeout_s)
        if reply is None:
            raise ToolError("timeout", f"the client did not answer {method} within {timeout_s:g} s")
        if "error" in reply:
            raise ToolError("client_error", f"the client refused {method}: {reply['error'].get('message')}")
        return reply.get("result") or {}


# ------------------------------------------------------------------------------------------ tool results


def tool_error_result(code: str, message: str, **data: Any) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": message}],
        "structuredContent": {"error": {"code": code, "message": message, **data}},
        "isError": True,
    }


def _success_result(structured: Any) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": orjson.dumps(structured).decode()}],
        "structuredContent": structured,
        "isError": False,
    }


def _field_path(error: Any) -> str:
    path = "/".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        path = f"{path}/{missing}" if path else missing
    elif error.validator == "additionalProperties" and "'" in error.message:
        extra = error.message.split("'")[1]
        path = f"{path}/{extra}" if path else extra
    return path or "(arguments)"


def invalid_arguments_result(tool: Tool, validation_errors: list[Any]) -> dict[str, Any]:
    items = [
        {"path": _field_path(e), "rule": str(e.validator), "message": schemas.explain(e)}
        for e in sorted(validation_errors, key=lambda e: list(map(str, e.absolute_path)))
    ]
    summary = "; ".join(f"{i['path']}: {i['message']} (rule: {i['rule']})" for i in items[:5])
    return tool_error_result(
        "invalid_arguments",
        f"Invalid arguments for {tool.name}: {summary}. Fix the named field(s) and call again.",
        errors=items,
    )


def invalid_value_result(tool: Tool, path: str, rule: str, message: str) -> dict[str, Any]:
    """An argument the stack cannot hold (apps.common.jsonvalues), said like a schema violation."""
    return tool_error_result(
        "invalid_arguments",
        f"Invalid arguments for {tool.name}: {path}: {message} (rule: {rule}). Fix the named field and call again.",
        errors=[{"path": path, "rule": rule, "message": message}],
    )


# ------------------------------------------------------------------------------------------ tool listing

_descriptions: dict[tuple[str, str], dict[str, Any]] = {}


def describe_tool(tool: Tool, era: str, protocol_version: str) -> dict[str, Any]:
    key = (tool.name, protocol_version)
    found = _descriptions.get(key)
    if found is None:
        found = {
            "name": tool.name,
            "title": tool.title,
            "description": tool.description,
            "inputSchema": tool.input_schema,
            "annotations": {"title": tool.title, **tool.annotations.as_mcp()},
        }
        if tool.output_schema is not None:
            found["outputSchema"] = tool.output_schema
        if protocol_version == "2025-11-25":
            found["execution"] = {"taskSupport": task_support(tool)}
        _descriptions[key] = found
    return found


async def visible_tools(principal: Any) -> list[Tool]:
    overrides = await tool_overrides()
    fixtures = config().conformance
    out = []
    for tool in registry.all():
        override = overrides.get(tool.name)
        if override is not None and not override.enabled:
            continue
        if tool.name.startswith("test_") and not fixtures:
            continue
        if principal.can_call(tool.permission):
            out.append(tool)
    return out


def _cursor_decode(cursor: Any) -> str:
    if cursor is None or cursor == "":
        return ""
    if not isinstance(cursor, str):
        raise RpcError(errors.INVALID_PARAMS, "Invalid cursor: expected the nextCursor string of a previous page")
    try:
        after = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
        if not after or base64.urlsafe_b64encode(after.encode()).decode() != cursor:
            raise ValueError(cursor)
        return after
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise RpcError(
            errors.INVALID_PARAMS, "Invalid cursor: pass back nextCursor exactly as received, or omit it"
        ) from None


async def tools_list(call: Call) -> dict[str, Any]:
    after = _cursor_decode(call.params.get("cursor"))
    tools = [t for t in await visible_tools(call.principal) if t.name > after]
    page_size = config().page_size
    page = tools[:page_size]
    result: dict[str, Any] = {"tools": [describe_tool(t, call.era, call.protocol_version) for t in page]}
    if len(tools) > page_size:
        result["nextCursor"] = base64.urlsafe_b64encode(page[-1].name.encode()).decode()
    if call.era == "modern":
        result["ttlMs"] = LIST_TTL_MS
        result["cacheScope"] = "private"  # the list depends on the caller's roles
    return result


# ------------------------------------------------------------------------------------------- tools/call

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"


def task_support(tool: Tool) -> str:
    """The tool's `execution.taskSupport`: its own declaration, and at least "optional" for a queued tool (a job
    is a task)."""
    if tool.task_support == "forbidden" and tool.execution == "queued":
        return "optional"
    return tool.task_support


def _task_request(call: Call, tool: Tool) -> tuple[bool, int | None]:
    """Whether this `tools/call` should answer with a task, and the client's requested TTL (ms).

    2025-11-25: the client asks with `params.task` ({ttl?}); a tool whose taskSupport is "required" must be asked
    so (-32601 otherwise). 2026-07-28: the server decides; it does so for a queued tool when the client declared the
    tasks extension in its capabilities.
    """
    support = task_support(tool)
    if call.era == "legacy":
        task = call.params.get("task")
        if task is None:
            if support == "required" and call.protocol_version == "2025-11-25":
                raise RpcError(
                    errors.METHOD_NOT_FOUND,
                    f'{tool.name} must be called as a task: add params.task (e.g. {{"ttl": 60000}})',
                )
            return False, None
        if call.protocol_version != "2025-11-25" or support == "forbidden":
            return False, None
        if not isinstance(task, dict):
            raise RpcError(errors.INVALID_PARAMS, 'params.task must be an object, e.g. {"ttl": 60000}')
        ttl = task.get("ttl")
        if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0):
            raise RpcError(errors.INVALID_PARAMS, "params.task.ttl must be a positive integer (milliseconds)")
        return True, ttl
    extensions = call.client_capabilities.get("extensions")
    wants = isinstance(extensions, dict) and TASKS_EXTENSION in extensions
    return (wants and support != "forbidden" and tool.execution == "queued"), None


def _idempotency_key(call: Call) -> str | None:
    key = call.headers.get("idempotency-key") or call.meta.get(IDEMPOTENCY_META)
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > idempotency.MAX_KEY_LENGTH or not key.isprintable():
        raise RpcError(
            errors.INVALID_PARAMS,
            f"Idempotency-Key must be 1-{idempotency.MAX_KEY_LENGTH} printable characters (e.g. a UUID)",
        )
    return key


def _rate_buckets(call: Call, tool: Tool, tool_override: Any) -> list[ratelimit.Bucket]:
    """The caller's bucket (from its roles) and its bucket for this tool.

    Roles set requests/minute per caller and per tool (apps.accounts); staff may override a tool's bucket in the
    admin; otherwise a limited caller gets MCP_RATE_LIMIT_TOOL per tool. An unlimited caller (admin) is only
    limited by a staff override.
    """
    principal = call.principal
    buckets = []
    per_minute = getattr(principal, "rate_limit_per_minute", None)
    if per_minute is not None:
        buckets.append(ratelimit.Bucket(f"mcpplat:rl:p:{principal.id}", Limit(per_minute, 60.0), "caller"))
    tool_limit = tool_override.rate_limit if tool_override is not None else None
    if tool_limit is None:
        own = [n for pattern, n in getattr(principal, "tool_rate_limits", ()) if fnmatchcase(tool.name, pattern)]
        if own:
            tool_limit = Limit(principal.rate_limit_for(tool.name), 60.0)
        elif per_minute is not None:
            tool_limit = config().tool_limit
    if tool_limit is not None:
        buckets.append(
            ratelimit.Bucket(f"mcpplat:rl:t:{principal.id}:{tool.name}", tool_limit, f"caller+tool {tool.name}")
        )
    return buckets


async def _run_inline(call: Call, tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
    ctx = GatewayToolContext(call)
    try:
        if tool.is_async:
            value = await asyncio.wait_for(tool.handler(ctx, arguments), tool.timeout_s)  # type: ignore[arg-type]
        else:
            handler = releasing(tool.handler)
            value = await asyncio.wait_for(asyncio.to_thread(handler, ctx, arguments), tool.timeout_s)  # type: ignore[arg-type]
    except ToolError as exc:
        call.outcome, call.error_code, call.detail = "error", exc.code, exc.message
        return tool_error_result(exc.code, exc.message, **exc.data)
    if isinstance(value, RawResult):
        return value.result
    if tool.output_validator is not None and not tool.output_validator.is_valid(value):
        problems = list(tool.output_validator.iter_errors(value))
        if problems:
            logger.error("tool %s broke its output schema: %s", tool.name, problems[0].message)
            call.outcome, call.error_code, call.detail = "error", "invalid_output", problems[0].message
            return tool_error_result(
                "invalid_output",
                f"{tool.name} produced a result that breaks its output schema ({problems[0].message}); "
                "this is a platform bug and has been logged.",
            )
    return _success_result(value)


JOB_STREAM_KEY = "mcpplat:gw:jobstream:"


def job_event_id(stream_id: str, seq: int) -> str:
    """SSE id of a queued call's event: the request's stream + the job event's seq. `Last-Event-ID` with such an id
    resumes from the job's own event log on any replica, after any restart (`job_stream_resume`)."""
    return f"{stream_id}.job.{seq}"


def job_event_message(progress_token: Any, log_level: str | None, event: Any) -> dict[str, Any] | None:
    """The notification a job event becomes on the caller's stream (None for events the caller does not see)."""
    data = event.data or {}
    if event.kind == "progress" and progress_token is not None:
        params: dict[str, Any] = {"progressToken": progress_token, "progress": data.get("progress", 0)}
        if data.get("total") is not None:
            params["total"] = data["total"]
        if data.get("message") is not None:
            params["message"] = data["message"]
        return {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}
    if event.kind == "log" and log_level is not None:
        level = data.get("level", "info")
        if level in LOG_LEVELS and LOG_LEVELS.index(level) >= LOG_LEVELS.index(log_level):
            return {
                "jsonrpc": "2.0",
                "method": "notifications/message",
                "params": {"level": level, "data": data.get("message")},
            }
    return None


async def _job_stream_remember(call: Call, job_id: str) -> None:
    from apps.gateway.redis_client import get_redis

    key = JOB_STREAM_KEY + call.stream_id
    pipe = get_redis().pipeline()
    pipe.hset(
        key,
        mapping={
            "session": call.session.id if call.session else "",
            "job": job_id,
            "rid": orjson.dumps(call.request_id),
            "token": orjson.dumps(call.progress_token),
            "level": call.log_level or "",
        },
    )
    pipe.expire(key, config().session_ttl_s)
    await pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def job_stream_resume(
    session_id: str, principal: Any, stream_id: str, after_seq: int
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield (SSE id, message) for a queued call's events after `after_seq`, then its response. Nothing when the
    stream is not this session's, the job is not the caller's, or the response was already sent."""
    from apps.gateway import integrations
    from apps.gateway.redis_client import get_redis

    runs = integrations.runs()
    found = await get_redis().hgetall(JOB_STREAM_KEY + stream_id)
    raw = {_text(k): v for k, v in found.items()}
    if runs is None or not raw or _text(raw.get("session", b"")) != session_id:
        return
    job_id = _text(raw["job"])
    token, level = orjson.loads(raw["token"]), _text(raw["level"]) or None
    try:
        job = await runs.events.db_call(runs.selectors.job_get)(job_id, principal)
    except ToolError:
        return
    if job.is_terminal and after_seq >= job.last_event_seq:
        return
    last = after_seq
    async for event in runs.streams.job_events(job_id, after=str(after_seq)):
        last = event.seq
        message = job_event_message(token, level, event)
        if message is not None:
            yield job_event_id(stream_id, event.seq), message
        if event.is_terminal:
            break
    job = await runs.events.db_call(runs.selectors.job_get)(job_id, principal)
    result = runs.mcp_tasks.tool_result_from_job(job)
    yield job_event_id(stream_id, last), {"jsonrpc": "2.0", "id": orjson.loads(raw["rid"]), "result": result}


def _trace_context(call: Call) -> dict[str, str] | None:
    context = {k: call.headers[k] for k in ("traceparent", "tracestate") if call.headers.get(k)}
    return context or None


async def _run_queued(
    call: Call,
    tool: Tool,
    arguments: dict[str, Any],
    key: str | None,
    *,
    as_task: bool = False,
    ttl_ms: int | None = None,
) -> dict[str, Any]:
    """Submit a Job (apps.runs) and relay its events: progress/log as notifications, then the final result.

    Closing the stream (2026-07-28) or `notifications/cancelled` cancels the job. Idempotency for queued tools is
    apps.runs' (Postgres unique constraint), so a retried submission returns the existing job.
    """
    from apps.gateway import integrations

    runs = integrations.runs()
    if runs is None:
        call.outcome, call.error_code = "error", "queue_unavailable"
        return tool_error_result(
            "queue_unavailable",
            f"{tool.name} runs on the {tool.queue!r} worker queue and the job runtime (apps.runs) is not installed "
            "in this deployment; ask an operator to enable it.",
        )
    db_call = runs.events.db_call
    run_id = call.meta.get("io.mcpplat/runId")
    try:
        job = await db_call(runs.services.job_submit)(
            tool=tool,
            arguments=arguments,
            principal=call.principal,
            request_id=str(call.request_id),
            idempotency_key=key,
            run_id=str(run_id) if run_id is not None else None,
            task_ttl_ms=ttl_ms,
            trace_context=_trace_context(call),
            audit_context={
                "session_id": call.session.id if call.session else None,
                "client_host": call.client_host,
                "protocol_version": call.protocol_version,
            },
        )
    except ToolError as exc:
        call.outcome, call.error_code, call.detail = "error", exc.code, exc.message
        return tool_error_result(exc.code, exc.message, **exc.data)
    call.job_id, call.run_id = str(job.pk), str(job.run_id) if getattr(job, "run_id", None) else call.run_id
    if as_task:
        era = "2025-11-25" if call.era == "legacy" else "2026-07-28"
        task = runs.mcp_tasks.task_from_job(job, era=era)
        task.pop("result", None)
        call.detail = "task created"
        if call.era == "modern":
            return {"resultType": "task", "task": task}
        return {"task": task}
    resumable = call.session is not None and call.emit is not None and bool(call.stream_id)
    if resumable:
        await _job_stream_remember(call, call.job_id)
    terminal = None
    try:
        async for event in runs.streams.job_events(call.job_id):
            message = job_event_message(call.progress_token, call.log_level, event) if call.emit else None
            if message is not None and call.emit is not None:
                if resumable:
                    await call.emit(message, event_id=job_event_id(call.stream_id, event.seq))
                else:
                    await call.emit(message)
            if event.is_terminal:
                terminal = event
                if resumable:
                    call.response_event_id = job_event_id(call.stream_id, event.seq)
                break
    except asyncio.CancelledError:
        await asyncio.shield(
            db_call(runs.services.job_cancel)(job_id=call.job_id, principal=call.principal, reason="client")
        )
        raise
    # A success carries its result in the terminal event; errors and cancellations are read from the job row.
    result = runs.mcp_tasks.tool_result_from_event(call.job_id, terminal) if terminal is not None else None
    if result is None:
        job = await db_call(runs.selectors.job_get)(call.job_id, call.principal)
        result = runs.mcp_tasks.tool_result_from_job(job)
    if result.get("isError"):
        error = (result.get("structuredContent") or {}).get("error") or {}
        call.outcome, call.error_code = "error", error.get("code", "tool_failed")
    return result


async def tools_call(call: Call) -> dict[str, Any]:
    params = call.params
    name = params.get("name")
    if not isinstance(name, str) or not name:
        raise RpcError(errors.INVALID_PARAMS, "tools/call needs params.name: the tool to call")
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise RpcError(errors.INVALID_PARAMS, "params.arguments must be an object of the tool's arguments")
    call.tool, call.arguments = name, arguments
    unrecordable = integrations.audit_problem(arguments)
    if unrecordable is not None:
        # No effect without its audit row: what cannot be recorded is not run.
        call.arguments = {}
        raise RpcError(
            errors.INVALID_PARAMS,
            f"params.arguments cannot be recorded in the audit trail ({unrecordable}); nothing was run",
        )
    responses = params.get("inputResponses")
    if responses is not None and (
        not isinstance(responses, dict) or not all(isinstance(v, dict) for v in responses.values())
    ):
        raise RpcError(
            errors.INVALID_PARAMS,
            "params.inputResponses must be an object mapping each inputRequests key to the client's result object",
        )
    tool = registry.get(name)
    if tool is None or (name.startswith("test_") and not config().conformance):
        raise RpcError(errors.INVALID_PARAMS, f"Unknown tool: {name}. Call tools/list for the tools you may call.")
    principal = call.principal
    if not principal.can_call(tool.permission):
        raise RpcError(
            errors.PERMISSION_DENIED,
            f"Permission denied: {principal.name} may not call {name}; no role of yours grants "
            f"{tool.permission!r}. Ask an administrator for a role that does.",
            {"tool": name, "permission": tool.permission},
            outcome="denied",
        )
    override = (await tool_overrides()).get(name)
    if override is not None and not override.enabled:
        call.outcome, call.error_code = "denied", "tool_disabled"
        return tool_error_result("tool_disabled", f"{name} is disabled by the platform's staff for now.")
    held = jsonvalues.value_problem(arguments)
    if held is not None:
        call.outcome, call.error_code = "invalid", "invalid_arguments"
        result = invalid_value_result(tool, *held)
        call.detail = result["content"][0]["text"]
        return result
    validator = tool.input_validator
    problems = list(validator.iter_errors(arguments)) if validator and not validator.is_valid(arguments) else []
    if problems:
        call.outcome, call.error_code = "invalid", "invalid_arguments"
        result = invalid_arguments_result(tool, problems)
        call.detail = result["content"][0]["text"]
        return result
    buckets = _rate_buckets(call, tool, override)
    verdict = await ratelimit.take(buckets) if buckets else ratelimit.ALLOWED
    if not verdict.allowed and verdict.bucket is not None:
        call.outcome, call.error_code = "rate_limited", "rate_limited"
        seconds = verdict.retry_after_ms / 1000
        return tool_error_result(
            "rate_limited",
            f"Rate limit reached for {verdict.bucket.label} ({verdict.bucket.limit} calls/seconds); "
            f"retry after {seconds:.1f} s.",
            retryAfterMs=verdict.retry_after_ms,
            limit=str(verdict.bucket.limit),
            bucket=verdict.bucket.label,
        )
    key = _idempotency_key(call)
    as_task, ttl_ms = _task_request(call, tool)
    if tool.execution == "queued":
        return await _run_queued(call, tool, arguments, key, as_task=as_task, ttl_ms=ttl_ms)
    if key is None:
        return await _run_inline(call, tool, arguments)
    digest = idempotency.arguments_digest(name, arguments)
    claim = await idempotency.claim(principal.id, key, digest)
    if claim.state == "replay" and claim.result is not None:
        call.detail = "idempotent replay"
        replayed = dict(claim.result)
        replayed["_meta"] = {**replayed.get("_meta", {}), "io.mcpplat/idempotentReplay": True}
        return replayed
    if claim.state == "conflict":
        call.outcome, call.error_code = "invalid", "idempotency_conflict"
        return tool_error_result(
            "idempotency_conflict",
            f"Idempotency-Key {key!r} was already used with different arguments for {name}; "
            "use a new key for a new call.",
        )
    if claim.state == "running":
        call.outcome, call.error_code = "error", "idempotency_in_progress"
        return tool_error_result(
            "idempotency_in_progress",
            f"A call with Idempotency-Key {key!r} is still running; retry after 1 s to get its result.",
            retryAfterMs=1000,
        )
    try:
        result = await _run_inline(call, tool, arguments)
    except BaseException:
        await asyncio.shield(idempotency.release(principal.id, key))
        raise
    await idempotency.complete(principal.id, key, digest, result)
    return result


# ----------------------------------------------------------------------------------- the other methods


def capabilities(era: str) -> dict[str, Any]:
    caps: dict[str, Any] = {"tools": {"listChanged": False}}
    if era == "legacy":
        caps["logging"] = {}
        caps["tasks"] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
    else:
        caps["extensions"] = {TASKS_EXTENSION: {}}
    if config().conformance:
        from apps.gateway.conformance import fixtures

        caps.update(fixtures.CAPABILITIES[era])
    return caps


async def server_discover(call: Call) -> dict[str, Any]:
    return {
        "supportedVersions": [*MODERN_VERSIONS, *HANDSHAKE_VERSIONS[1:][::-1]],
        "capabilities": capabilities("modern"),
        "serverInfo": SERVER_INFO,
        "instructions": INSTRUCTIONS,
        "ttlMs": LIST_TTL_MS,
        "cacheScope": "public",
    }


def initialize_result(requested: Any) -> dict[str, Any]:
    version = requested if requested in HANDSHAKE_VERSIONS[1:] else LATEST_HANDSHAKE
    return {
        "protocolVersion": version,
        "capabilities": capabilities("legacy"),
        "serverInfo": SERVER_INFO,
        "instructions": INSTRUCTIONS,
    }


async def ping(call: Call) -> dict[str, Any]:
    return {}


async def logging_set_level(call: Call) -> dict[str, Any]:
    level = call.params.get("level")
    if level not in LOG_LEVELS:
        raise RpcError(errors.INVALID_PARAMS, f"level must be one of {', '.join(LOG_LEVELS)}")
    if call.session is not None:
        await sessions.session_set_log_level(call.session, level)
    return {}


# ------------------------------------------------------------------------- MCP tasks (= jobs, apps.runs)


def _task_era(call: Call) -> str:
    return "2025-11-25" if call.era == "legacy" else "2026-07-28"


def _task_id(call: Call) -> str:
    task_id = call.params.get("taskId")
    if not isinstance(task_id, str) or not task_id:
        raise RpcError(errors.INVALID_PARAMS, f"{call.method} needs params.taskId: the taskId of a task you created")
    call.job_id = task_id
    return task_id


async def _tasks_do(call: Call, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run an apps.runs.mcp_tasks function off the event loop; its TaskError becomes the JSON-RPC error."""
    from apps.gateway import integrations

    runs = integrations.runs()
    if runs is None:
        raise RpcError(errors.METHOD_NOT_FOUND, f"Method not found: {call.method} (no job runtime installed)")
    try:
        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        return await runs.events.db_call(fn)(*args, **kwargs)
    except runs.mcp_tasks.TaskError as exc:
        raise RpcError(exc.code, exc.message, exc.data or None, outcome="invalid") from None


def _mcp_tasks() -> Any:
    from apps.runs import mcp_tasks

    return mcp_tasks


async def tasks_get(call: Call) -> dict[str, Any]:
    task_id = _task_id(call)
    return await _tasks_do(call, _mcp_tasks().task_get, task_id, call.principal, era=_task_era(call))


async def tasks_result(call: Call) -> dict[str, Any]:
    task_id = _task_id(call)
    return await _tasks_do(call, _mcp_tasks().task_result, task_id, call.principal)


async def tasks_list(call: Call) -> dict[str, Any]:
    cursor = call.params.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise RpcError(errors.INVALID_PARAMS, "cursor: pass back nextCursor exactly as received, or omit it")
    return await _tasks_do(call, _mcp_tasks().task_list, call.principal, cursor=cursor, era=_task_era(call))


async def tasks_cancel(call: Call) -> dict[str, Any]:
    task_id = _task_id(call)
    return await _tasks_do(call, _mcp_tasks().task_cancel, task_id, call.principal, era=_task_era(call))


async def tasks_update(call: Call) -> dict[str, Any]:
    task_id = _task_id(call)
    responses = call.params.get("inputResponses")
    if responses is not None and not isinstance(responses, dict):
        raise RpcError(errors.INVALID_PARAMS, "params.inputResponses must be an object")
    return await _tasks_do(call, _mcp_tasks().task_update, task_id, call.principal, input_responses=responses)


Handler = Callable[[Call], Awaitable[dict[str, Any]]]
# method -> (handler, eras it exists in)
METHODS: dict[str, tuple[Handler, frozenset[str]]] = {
    "tools/list": (tools_list, frozenset({"legacy", "modern"})),
    "tools/call": (tools_call, frozenset({"legacy", "modern"})),
    "server/discover": (server_discover, frozenset({"modern"})),
    "ping": (ping, frozenset({"legacy"})),
    "logging/setLevel": (logging_set_level, frozenset({"legacy"})),
    "tasks/get": (tasks_get, frozenset({"legacy", "modern"})),
    "tasks/result": (tasks_result, frozenset({"legacy"})),
    "tasks/list": (tasks_list, frozenset({"legacy"})),
    "tasks/cancel": (tasks_cancel, frozenset({"legacy", "modern"})),
    "tasks/update": (tasks_update, frozenset({"modern"})),
}


async def dispatch(call: Call) -> dict[str, Any]:
    entry = METHODS.get(call.method)
    if entry is None or call.era not in entry[1]:
        hint = ""
        if call.era == "modern" and call.method in {"initialize", "ping", "logging/setLevel"}:
            hint = " on the 2026-07-28 wire (it belongs to the handshake era; use server/discover)"
        raise RpcError(errors.METHOD_NOT_FOUND, f"Method not found: {call.method}{hint}")
    # Arguments get their own check (an invalid_arguments result naming the field); the rest of params here.
    held = jsonvalues.value_problem({k: v for k, v in call.params.items() if k != "arguments"})
    if held is not None:
        path, rule, message = held
        raise RpcError(errors.INVALID_PARAMS, f"params/{path}: {message} (rule: {rule})")
    result = await entry[0](call)
    if call.era == "modern":
        result.setdefault("resultType", "complete")
        meta = result.get("_meta")
        result["_meta"] = {**(meta or {}), SERVER_INFO_META: SERVER_INFO}
    return result


def now_ms() -> float:
    return time.perf_counter() * 1000.0
