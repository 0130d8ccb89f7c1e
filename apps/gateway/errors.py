"""The one error taxonomy of the MCP endpoint (docs/errors.md is generated from `CATALOG`).

Two kinds of failure reach a client:

* protocol errors: a JSON-RPC `error` object (`RpcError`) with a JSON-RPC code and, on the 2026-07-28 wire and for
  transport failures, an HTTP status;
* tool errors: a `tools/call` *result* with `isError: true` whose `structuredContent.error` carries a platform code
  (`ToolError` from apps.gateway.registry) — the model sees what went wrong and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# JSON-RPC 2.0 and MCP codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
MISSING_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022
RESOURCE_NOT_FOUND_LEGACY = -32002
# Platform codes: outside -32768..-32000 (reserved by JSON-RPC and MCP), shaped like the HTTP status they mirror.
UNAUTHENTICATED = 40100
PERMISSION_DENIED = 40300
SESSION_NOT_FOUND = 40400
PAYLOAD_TOO_LARGE = 41300
SERVICE_UNAVAILABLE = 50300


@dataclass(frozen=True)
class ErrorSpec:
    code: int | str
    name: str
    kind: str  # "jsonrpc" (an error object) or "tool" (an isError result)
    http_status: int
    meaning: str


CATALOG: tuple[ErrorSpec, ...] = (
    ErrorSpec(PARSE_ERROR, "parse_error", "jsonrpc", 400, "The body is not valid JSON."),
    ErrorSpec(
        INVALID_REQUEST,
        "invalid_request",
        "jsonrpc",
        400,
        "The body is not one JSON-RPC request/notification object (batches are rejected), a handshake-era request "
        "lacks its `Mcp-Session-Id`, or the content type is wrong (415 for a non-JSON `Content-Type`).",
    ),
    ErrorSpec(
        METHOD_NOT_FOUND,
        "method_not_found",
        "jsonrpc",
        404,
        "Unknown method, or a handshake-only method (`initialize`, `ping`, `logging/setLevel`) sent on the "
        "2026-07-28 wire. HTTP 404 on the 2026-07-28 wire, 200 on the handshake wire.",
    ),
    ErrorSpec(
        INVALID_PARAMS,
        "invalid_params",
        "jsonrpc",
        400,
        "Malformed params: missing `_meta` protocol fields (2026-07-28), unknown tool, bad cursor, unknown resource "
        "(2026-07-28). HTTP 400 on the 2026-07-28 wire, 200 on the handshake wire.",
    ),
    ErrorSpec(INTERNAL_ERROR, "internal_error", "jsonrpc", 200, "An unexpected failure; the request id is logged."),
    ErrorSpec(
        SERVICE_UNAVAILABLE,
        "service_unavailable",
        "jsonrpc",
        503,
        "PostgreSQL or Redis is unreachable (restarting, refusing connections, or slower than its timeout): "
        "`data.dependency` names it; nothing was done; retry after the `Retry-After` header (`data.retryAfterMs`).",
    ),
    ErrorSpec(
        HEADER_MISMATCH,
        "header_mismatch",
        "jsonrpc",
        400,
        "2026-07-28: `MCP-Protocol-Version`, `Mcp-Method` or `Mcp-Name` is missing, duplicated or disagrees with "
        "the body.",
    ),
    ErrorSpec(
        MISSING_CLIENT_CAPABILITY,
        "missing_client_capability",
        "jsonrpc",
        400,
        "2026-07-28: the request needs a client capability the client did not declare (`data.requiredCapabilities`).",
    ),
    ErrorSpec(
        UNSUPPORTED_PROTOCOL_VERSION,
        "unsupported_protocol_version",
        "jsonrpc",
        400,
        "The requested protocol version is not served (`data.supported`, `data.requested`).",
    ),
    ErrorSpec(
        RESOURCE_NOT_FOUND_LEGACY,
        "resource_not_found",
        "jsonrpc",
        200,
        "Handshake wire only: the resource does not exist (2026-07-28 uses -32602).",
    ),
    ErrorSpec(
        UNAUTHENTICATED,
        "unauthenticated",
        "jsonrpc",
        401,
        "Missing, invalid, expired or revoked credentials. The response carries `WWW-Authenticate: Bearer "
        'resource_metadata="…"`. With HTTP 429, `Retry-After` and `data.reason` = `too_many_failed_authentications`: '
        "the remote client address failed `MCP_AUTH_FAILURES_PER_MINUTE` times this minute and is refused unverified.",
    ),
    ErrorSpec(
        PERMISSION_DENIED,
        "permission_denied",
        "jsonrpc",
        200,
        "The caller's roles do not grant the tool's permission (`data.permission`). Explicit: never "
        '"unknown tool". Audited as `denied`. A token lacking an OAuth scope gets HTTP 403 `insufficient_scope`.',
    ),
    ErrorSpec(
        SESSION_NOT_FOUND,
        "session_not_found",
        "jsonrpc",
        404,
        "Handshake wire: the `Mcp-Session-Id` is unknown, expired, deleted, or belongs to another caller. "
        "Start a new session with `initialize`.",
    ),
    ErrorSpec(PAYLOAD_TOO_LARGE, "payload_too_large", "jsonrpc", 413, "The body exceeds `MCP_MAX_BODY_BYTES`."),
    ErrorSpec(
        "invalid_arguments",
        "invalid_arguments",
        "tool",
        200,
        "An argument breaks the input schema: `data.errors[]` names each field (`path`) and rule (`rule`); a "
        "`oneOf` / `anyOf` item names every alternative and the fields it requires.",
    ),
    ErrorSpec(
        "rate_limited",
        "rate_limited",
        "tool",
        200,
        "A token bucket (per caller, or per caller and tool) is "
        "empty: `data.retryAfterMs` says when to retry, `data.limit` which bucket.",
    ),
    ErrorSpec(
        "idempotency_conflict",
        "idempotency_conflict",
        "tool",
        200,
        "The `Idempotency-Key` was already used by this caller with different arguments: use a new key.",
    ),
    ErrorSpec(
        "idempotency_in_progress",
        "idempotency_in_progress",
        "tool",
        200,
        "A call with this `Idempotency-Key` is still running: retry after `data.retryAfterMs`.",
    ),
    ErrorSpec("tool_disabled", "tool_disabled", "tool", 200, "Staff disabled the tool in the admin."),
    ErrorSpec(
        "queue_unavailable",
        "queue_unavailable",
        "tool",
        200,
        "The tool runs on a worker queue and the job runtime (apps.runs) is not installed.",
    ),
    ErrorSpec(
        "invalid_output",
        "invalid_output",
        "tool",
        200,
        "The tool produced a result that breaks its own output schema (a platform bug; reported).",
    ),
    ErrorSpec(
        "tool_failed",
        "tool_failed",
        "tool",
        200,
        "The tool raised an unexpected error; the request id is logged and audited.",
    ),
    ErrorSpec(
        "timeout",
        "timeout",
        "tool",
        200,
        "The tool did not finish within its declared timeout (a queued job ends `timed_out`; not retried).",
    ),
    ErrorSpec(
        "cancelled",
        "cancelled",
        "tool",
        200,
        "The client cancelled the call (stream closed, `notifications/cancelled`, `tasks/cancel`, `run.cancel`).",
    ),
    # apps.runs (jobs and runs; docs/jobs-and-runs.md), apps.sandbox (docs/sandbox.md), apps.browser (docs/browser.md)
    ErrorSpec(
        "job_not_found",
        "job_not_found",
        "tool",
        200,
        "Unknown job id, or a job of another caller (indistinguishable on purpose; `runs.manage` sees all).",
    ),
    ErrorSpec(
        "run_not_found",
        "run_not_found",
        "tool",
        200,
        'Unknown run id, or a run of another caller (`run.*` tools, `_meta["io.mcpplat/runId"]`).',
    ),
    ErrorSpec(
        "run_expired",
        "run_expired",
        "tool",
        200,
        "The run's lease ran out before this heartbeat; its jobs were cancelled. Start a new run.",
    ),
    ErrorSpec(
        "run_not_active",
        "run_not_active",
        "tool",
        200,
        "The run was cancelled or has ended: no heartbeat and no new job for it.",
    ),
    ErrorSpec(
        "job_state_conflict",
        "job_state_conflict",
        "tool",
        200,
        "The job is not in a state that allows this (e.g. completing a job another worker claimed).",
    ),
    ErrorSpec(
        "worker_lost",
        "worker_lost",
        "tool",
        200,
        "The worker running the job died mid-job and the job was not run again: its tool is not safe to run twice "
        '(`rerun="never"`, or sandbox.exec\'s command was killed with its worker), or it ran out of lost-worker '
        "retries (`RUNS_LOST_WORKER_RETRIES`). Check whether the call took effect before calling it again.",
    ),
    ErrorSpec(
        "unavailable",
        "unavailable",
        "tool",
        200,
        "A platform dependency (database, Redis, broker) is unreachable; retry after a few seconds.",
    ),
    ErrorSpec(
        "image_not_allowed",
        "image_not_allowed",
        "tool",
        200,
        "Sandbox image off the allowlist; the message lists the allowed images and where to add one.",
    ),
    ErrorSpec(
        "quota_exceeded",
        "quota_exceeded",
        "tool",
        200,
        "A sandbox limit, TTL, timeout or the live-sandbox count is over the role's quota (names the field and quota).",
    ),
    ErrorSpec(
        "not_found",
        "not_found",
        "tool",
        200,
        "Unknown sandbox or snapshot, or another caller's (indistinguishable on purpose).",
    ),
    ErrorSpec(
        "sandbox_destroyed",
        "sandbox_destroyed",
        "tool",
        200,
        "The sandbox was destroyed, expired (destroyed on the spot), or its container vanished.",
    ),
    ErrorSpec(
        "sandbox_engine_unavailable",
        "sandbox_engine_unavailable",
        "tool",
        200,
        "The container engine at `DOCKER_HOST` is unreachable (retryable; nothing is left running).",
    ),
    ErrorSpec(
        "sandbox_runtime_error",
        "sandbox_runtime_error",
        "tool",
        200,
        "The container engine refused (e.g. an allowed image that is not in the engine).",
    ),
    ErrorSpec(
        "sandbox_files_failed",
        "sandbox_files_failed",
        "tool",
        200,
        "Copying files into or out of the sandbox failed; partial artifacts are removed.",
    ),
    ErrorSpec(
        "sandbox_snapshot_failed",
        "sandbox_snapshot_failed",
        "tool",
        200,
        "Snapshotting the sandbox failed; partial images are removed.",
    ),
    ErrorSpec(
        "sandbox_snapshot_unavailable",
        "sandbox_snapshot_unavailable",
        "tool",
        200,
        "Snapshots are not available with this engine or runtime.",
    ),
    ErrorSpec("invalid_url", "invalid_url", "tool", 200, "The `url` argument is not an absolute http(s) URL."),
    ErrorSpec(
        "url_blocked",
        "url_blocked",
        "tool",
        200,
        "The URL (or a navigation's final URL) is blocked by the egress policy; `blocks` says which rule.",
    ),
    ErrorSpec(
        "navigation_timeout",
        "navigation_timeout",
        "tool",
        200,
        "The page did not load within the navigation timeout.",
    ),
    ErrorSpec(
        "navigation_failed",
        "navigation_failed",
        "tool",
        200,
        "The browser could not load the page (DNS, TLS, connection refused, ...).",
    ),
    ErrorSpec(
        "session_not_found",
        "session_not_found (browser)",
        "tool",
        200,
        "Unknown or expired browser session, or another caller's (indistinguishable on purpose).",
    ),
    ErrorSpec(
        "session_ended",
        "session_ended",
        "tool",
        200,
        "The browser session's page or browser crashed; start a new session.",
    ),
    ErrorSpec(
        "session_lost",
        "session_lost",
        "tool",
        200,
        "The worker that owned the browser session died; start a new session.",
    ),
    ErrorSpec(
        "session_limit",
        "session_limit",
        "tool",
        200,
        "The role's cap on concurrent browser sessions is reached; close one first.",
    ),
    ErrorSpec(
        "stale_ref",
        "stale_ref",
        "tool",
        200,
        "The element ref is not in the session's latest snapshot (or its element is gone); take a new snapshot.",
    ),
    ErrorSpec("element_not_found", "element_not_found", "tool", 200, "No element matches the role and name given."),
    ErrorSpec(
        "element_ambiguous",
        "element_ambiguous",
        "tool",
        200,
        "Several elements match the role and name given; narrow it or use a ref.",
    ),
    ErrorSpec("action_timeout", "action_timeout", "tool", 200, "The browser action did not complete in time."),
    ErrorSpec("action_failed", "action_failed", "tool", 200, "The browser action failed on the page."),
    ErrorSpec("selector_no_match", "selector_no_match", "tool", 200, "The CSS selector matched nothing on the page."),
    ErrorSpec(
        "extraction_invalid",
        "extraction_invalid",
        "tool",
        200,
        "Extraction found no value for some fields; names the fields and the selectors that matched nothing.",
    ),
    ErrorSpec("extract_failed", "extract_failed", "tool", 200, "Extraction from the page failed."),
    ErrorSpec(
        "trace_active",
        "trace_active",
        "tool",
        200,
        "A trace is already recording in this session; stop it first.",
    ),
    ErrorSpec("trace_not_active", "trace_not_active", "tool", 200, "No trace is recording in this session."),
    ErrorSpec(
        "browser_unavailable",
        "browser_unavailable",
        "tool",
        200,
        "No browser could be started; names `BROWSER_EXECUTABLE` and `scripts/provision.d/40-chromium.sh`.",
    ),
    ErrorSpec("browser_timeout", "browser_timeout", "tool", 200, "The browser did not answer in time."),
)

# Codes that set the HTTP status on the 2026-07-28 wire (the spec's MUSTs; others travel in a 200).
MODERN_HTTP_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    METHOD_NOT_FOUND: 404,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    UNAUTHENTICATED: 401,
    SESSION_NOT_FOUND: 404,
    PAYLOAD_TOO_LARGE: 413,
}
# On the handshake wire only transport-level failures change the HTTP status.
LEGACY_HTTP_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    UNAUTHENTICATED: 401,
    SESSION_NOT_FOUND: 404,
    PAYLOAD_TOO_LARGE: 413,
}


class RpcError(Exception):
    """A protocol error: answered as a JSON-RPC error object (never raised past the transport)."""

    def __init__(
        self, code: int, message: str, data: Any = None, *, http_status: int | None = None, outcome: str = "invalid"
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.http_status = http_status
        self.outcome = outcome

    def as_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def markdown() -> str:
    """docs/errors.md body."""
    rows = [
        "| code | name | kind | HTTP status | meaning |",
        "|---|---|---|---|---|",
    ]
    for spec in CATALOG:
        code = f"`{spec.code}`"
        rows.append(f"| {code} | `{spec.name}` | {spec.kind} | {spec.http_status} | {spec.meaning} |")
    return "\n".join(rows)
