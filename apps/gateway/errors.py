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
        'resource_metadata="…"`.',
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
        "An argument breaks the input schema: `data.errors[]` names each field (`path`) and rule (`rule`).",
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
    ErrorSpec("timeout", "timeout", "tool", 200, "The tool did not finish within its declared timeout."),
    ErrorSpec(
        "cancelled",
        "cancelled",
        "tool",
        200,
        "The client cancelled the call (stream closed or `notifications/cancelled`).",
    ),
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
