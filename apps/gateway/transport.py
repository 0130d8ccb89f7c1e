"""`/mcp`: Streamable HTTP for both MCP eras, as a lean ASGI application (no Django middleware, no thread hops).

The era is chosen like python-sdk 2.3.0 does: no `MCP-Protocol-Version` header, or a handshake-era value, takes the
handshake path (initialize, `Mcp-Session-Id`, GET stream, DELETE); any other value takes the 2026-07-28 path,
which itself answers -32022 for a version it does not serve.

Every response is decided before it starts and audited before its last byte is sent. Once an SSE response has
started nothing raises: failures become a JSON-RPC error event and the stream ends normally (daphne would
otherwise never close the connection). Daphne holds headers until the first body chunk, so every stream opens
with a comment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeGuard

import orjson
from django.http.request import split_domain_port, validate_host

from apps.common import jsonvalues, outages
from apps.gateway import errors, integrations, protocol, sessions
from apps.gateway.config import HANDSHAKE_VERSIONS, MODERN_VERSIONS, config
from apps.gateway.errors import RpcError
from apps.gateway.protocol import Call

logger = logging.getLogger("mcpplat.gateway")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

ROUTING_HEADERS = ("mcp-protocol-version", "mcp-method", "mcp-name")
NAME_BEARING = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
CORS_ALLOW_HEADERS = (
    "Content-Type, Authorization, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, Mcp-Method, "
    "Mcp-Name, Idempotency-Key"
)
CORS_EXPOSE_HEADERS = b"Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate"

# handshake-era requests running in this process, for notifications/cancelled: (session id, request id) -> task
_running: dict[tuple[str, str], asyncio.Task[Any]] = {}


class Exchange:
    """One HTTP exchange: parsed headers, the response state, and what the audit needs."""

    __slots__ = (
        "client_host",
        "cors",
        "duplicated",
        "headers",
        "method",
        "receive",
        "send",
        "started",
        "t0",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send):
        self.t0 = time.perf_counter()
        headers: dict[str, str] = {}
        duplicated: set[str] = set()
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if name in headers:
                duplicated.add(name)
                headers[name] = f"{headers[name]}, {value}"
            else:
                headers[name] = value
        self.headers = headers
        self.duplicated = duplicated
        self.method: str = scope["method"]
        client = scope.get("client")
        self.client_host: str | None = client[0] if client else None
        self.receive = receive
        self.send = send
        self.started = False
        self.cors: list[tuple[bytes, bytes]] = []

    # ------------------------------------------------------------------------------------ plain responses

    async def respond(self, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> None:
        out = [*self.cors, *(headers or [])]
        if body:
            out.append((b"content-type", b"application/json"))
        out.append((b"content-length", str(len(body)).encode()))
        self.started = True
        await self.send({"type": "http.response.start", "status": status, "headers": out})
        await self.send({"type": "http.response.body", "body": body})

    async def respond_json(self, status: int, message: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        await self.respond(status, orjson.dumps(message), headers)

    async def respond_error(
        self, status: int, error: RpcError, request_id: Any = None, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        await self.respond_json(status, {"jsonrpc": "2.0", "id": request_id, "error": error.as_error()}, headers)

    # ---------------------------------------------------------------------------------------- SSE

    async def sse_start(self, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        self.started = True
        await self.send(
            {"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *self.cors, *(extra or [])]}
        )
        await self.send({"type": "http.response.body", "body": b": stream open\n\n", "more_body": True})

    async def sse_send(self, chunk: bytes, *, more: bool = True) -> None:
        await self.send({"type": "http.response.body", "body": chunk, "more_body": more})

    async def read_body(self) -> bytes:
        limit = config().max_body_bytes
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RpcError(
                errors.PAYLOAD_TOO_LARGE, f"Request body exceeds {limit} bytes (MCP_MAX_BODY_BYTES)", http_status=413
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ConnectionAbortedError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RpcError(
                    errors.PAYLOAD_TOO_LARGE,
                    f"Request body exceeds {limit} bytes (MCP_MAX_BODY_BYTES)",
                    http_status=413,
                )
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    async def wait_disconnect(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass


def sse_event(payload: bytes, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n".encode() if event_id else b""
    return head + b"event: message\ndata: " + payload + b"\n\n"


# ------------------------------------------------------------------------------------ request security


def _host_ok(host: str) -> bool:
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, config().allowed_hosts)


def _origin_ok(origin: str, host: str) -> bool:
    origin = origin.lower()
    if origin in config().allowed_origins:
        return True
    _, _, netloc = origin.partition("://")
    return bool(netloc) and netloc == host.lower()


def _accepts(ex: Exchange) -> tuple[bool, bool]:
    accept = ex.headers.get("accept", "")
    if not accept:
        return True, False
    json_ok = "application/json" in accept or "*/*" in accept or "application/*" in accept
    return json_ok, "text/event-stream" in accept


# --------------------------------------------------------------------------------------------- audit


async def _audit(
    ex: Exchange,
    *,
    principal: Any,
    method: str,
    outcome: str,
    error_code: str | None = None,
    call: Call | None = None,
    request_id: Any = None,
    protocol_version: str | None = None,
    session_id: str | None = None,
    detail: str = "",
) -> None:
    try:
        await integrations.audit(
            principal_id=getattr(principal, "id", None) or "anonymous",
            identity_source=getattr(principal, "identity_source", None) or "none",
            credential_id=getattr(principal, "credential_id", None),
            method=method or "(no method)",
            tool=call.tool if call else None,
            arguments=call.arguments if call else {},
            outcome=call.outcome if call and outcome == "ok" else outcome,
            error_code=(call.error_code if call and error_code is None else error_code),
            latency_ms=round((time.perf_counter() - ex.t0) * 1000.0, 3),
            request_id=str(request_id if request_id is not None else (call.request_id if call else "")) or None,
            trace_id=(call.trace_id if call else None) or ex.headers.get("traceparent"),
            session_id=session_id or (call.session.id if call and call.session else None),
            client_host=ex.client_host,
            protocol_version=protocol_version or (call.protocol_version if call else None),
            run_id=call.run_id if call else None,
            job_id=call.job_id if call else None,
            detail=detail or (call.detail if call else ""),
        )
    except Exception as exc:
        # An audit failure must not be silent; while the database is down it is one line, not a traceback each.
        if (dependency := outages.dependency_of(exc)) is not None:
            outages.log_outage(dependency, exc, f"audit of {method}")
        else:
            logger.exception("audit write failed for %s", method)
        raise


def _error_code_name(code: int) -> str:
    for spec in errors.CATALOG:
        if spec.code == code:
            return spec.name
    return str(code)


async def _refuse(
    ex: Exchange,
    status: int,
    error: RpcError,
    *,
    principal: Any = None,
    request_id: Any = None,
    method: str = "",
    protocol_version: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await _audit(
        ex,
        principal=principal,
        method=method or f"HTTP {ex.method}",
        outcome=error.outcome,
        error_code=_error_code_name(error.code),
        request_id=request_id,
        protocol_version=protocol_version,
        detail=error.message,
    )
    await ex.respond_error(status, error, request_id, headers)


async def _authenticate(ex: Exchange, protocol_version: str | None) -> Any | None:
    module = integrations.identity()
    try:
        return await module.authenticate(ex.headers, client_host=ex.client_host)
    except module.AuthError as exc:
        headers = [(b"www-authenticate", exc.www_authenticate.encode())] if exc.www_authenticate else []
        code = errors.PERMISSION_DENIED if exc.status == 403 else errors.UNAUTHENTICATED
        data: dict[str, Any] = {"reason": exc.code}
        if retry_after := getattr(exc, "retry_after_s", None):
            headers.append((b"retry-after", str(retry_after).encode()))
            data["retryAfterMs"] = retry_after * 1000
        error = RpcError(code, exc.message, data, outcome="denied")
        await _refuse(ex, exc.status, error, protocol_version=protocol_version, headers=headers)
        return None


# -------------------------------------------------------------------------------------- the entry point


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    ex = Exchange(scope, receive, send)
    try:
        await _handle(ex)
    except ConnectionAbortedError:
        return
    except Exception as exc:
        dependency = outages.dependency_of(exc)
        if dependency is None:
            logger.exception("unhandled error on /mcp")
            if not ex.started:
                await ex.respond_error(500, RpcError(errors.INTERNAL_ERROR, "Internal error; it has been logged"))
            return
        outages.log_outage(dependency, exc, "/mcp")
        if not ex.started:
            await ex.respond_error(503, unavailable_error(dependency), headers=_retry_after_headers())


def unavailable_error(dependency: str) -> RpcError:
    """The answer while `dependency` (PostgreSQL, Redis) is down: 503 + Retry-After, naming it (never a 500)."""
    data = {"dependency": dependency, "retryAfterMs": outages.retry_after_s() * 1000}
    return RpcError(errors.SERVICE_UNAVAILABLE, outages.message(dependency), data, http_status=503, outcome="error")


def _retry_after_headers() -> list[tuple[bytes, bytes]]:
    return [(b"retry-after", str(outages.retry_after_s()).encode())]


async def _handle(ex: Exchange) -> None:
    headers = ex.headers
    host = headers.get("host", "")
    if not _host_ok(host):
        # DNS rebinding: a Host we do not serve (421 like python-sdk; any 4xx satisfies the spec).
        await _refuse(ex, 421, RpcError(errors.INVALID_REQUEST, f"Host {host!r} is not served here (ALLOWED_HOSTS)"))
        return
    origin = headers.get("origin")
    if origin is not None:
        if not _origin_ok(origin, host):
            await _refuse(
                ex,
                403,
                RpcError(
                    errors.INVALID_REQUEST,
                    f"Origin {origin!r} is not allowed; add it to MCP_ALLOWED_ORIGINS or MCP_CORS_ORIGINS",
                    outcome="denied",
                ),
            )
            return
        if origin.lower() in config().cors_origins:
            ex.cors = [
                (b"access-control-allow-origin", origin.encode()),
                (b"access-control-expose-headers", CORS_EXPOSE_HEADERS),
                (b"vary", b"Origin"),
            ]
    if ex.method == "OPTIONS":
        await _preflight(ex)
        return
    version = headers.get("mcp-protocol-version")
    if version is not None and version not in HANDSHAKE_VERSIONS:
        await _modern(ex, version)
    else:
        await _legacy(ex, version)


async def _preflight(ex: Exchange) -> None:
    if not ex.cors:
        await ex.respond(204, headers=[(b"allow", b"GET, POST, DELETE, OPTIONS")])
        return
    requested = ex.headers.get("access-control-request-headers", "")
    params = [h.strip() for h in requested.split(",") if h.strip().lower().startswith("mcp-param-")]
    allow = ", ".join([CORS_ALLOW_HEADERS, *params])
    await ex.respond(
        204,
        headers=[
            (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
            (b"access-control-allow-headers", allow.encode()),
            (b"access-control-max-age", b"600"),
        ],
    )


async def _read_message(ex: Exchange, principal: Any, version: str | None) -> dict[str, Any] | None:
    """Content type, size cap, JSON, one object: the checks every POST shares. None: already answered."""
    content_type = ex.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        await _refuse(
            ex,
            415,
            RpcError(errors.INVALID_REQUEST, "Content-Type must be application/json (one JSON-RPC message)"),
            principal=principal,
            protocol_version=version,
        )
        return None
    try:
        body = await ex.read_body()
    except RpcError as exc:
        await _refuse(ex, 413, exc, principal=principal, protocol_version=version)
        return None
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        await _refuse(
            ex,
            400,
            RpcError(errors.PARSE_ERROR, "Parse error: the body is not valid JSON"),
            principal=principal,
            protocol_version=version,
        )
        return None
    if jsonvalues.depth(message) > jsonvalues.MAX_DEPTH:
        # The one nesting limit (apps.common.jsonvalues): what passes it can be validated, run and audited.
        await _refuse(
            ex,
            400,
            RpcError(
                errors.INVALID_REQUEST,
                f"Invalid request: the message nests deeper than {jsonvalues.MAX_DEPTH} levels; flatten the arguments",
            ),
            principal=principal,
            protocol_version=version,
        )
        return None
    if isinstance(message, list):
        await _refuse(
            ex,
            400,
            RpcError(errors.INVALID_REQUEST, "JSON-RPC batches are not supported: send one message per POST"),
            principal=principal,
            protocol_version=version,
        )
        return None
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        await _refuse(
            ex,
            400,
            RpcError(errors.INVALID_REQUEST, 'Invalid request: expected one JSON-RPC 2.0 object ("jsonrpc": "2.0")'),
            principal=principal,
            protocol_version=version,
        )
        return None
    return message


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, str) or (isinstance(value, int) and jsonvalues.INT64_MIN <= value <= jsonvalues.INT64_MAX)


def _valid_method(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


# ------------------------------------------------------------------------------------------ 2026-07-28


async def _modern(ex: Exchange, version: str) -> None:
    if ex.method != "POST":
        await ex.respond(405, headers=[(b"allow", b"POST")])
        return
    principal = await _authenticate(ex, version)
    if principal is None:
        return
    json_ok, sse_ok = _accepts(ex)
    if not (json_ok or sse_ok):
        await _refuse(
            ex,
            406,
            RpcError(errors.INVALID_REQUEST, "Accept must include application/json and text/event-stream"),
            principal=principal,
            protocol_version=version,
        )
        return
    message = await _read_message(ex, principal, version)
    if message is None:
        return
    if "id" not in message:
        if version not in MODERN_VERSIONS:
            await _refuse(ex, 400, _unsupported(version), principal=principal, protocol_version=version)
            return
        await ex.respond(202)  # notifications: accepted and dropped (cancellation is closing the stream)
        return
    rid = message.get("id")
    method = message.get("method")
    if not _valid_id(rid) or not _valid_method(method):
        await _refuse(
            ex,
            400,
            RpcError(
                errors.INVALID_REQUEST,
                "Invalid request: needs a string or 64-bit integer id and a non-empty string method",
            ),
            principal=principal,
            request_id=rid if _valid_id(rid) else None,
            protocol_version=version,
        )
        return
    failure = _modern_ladder(ex, message, method, version)
    if isinstance(failure, RpcError):
        await _refuse(ex, 400, failure, principal=principal, request_id=rid, method=method, protocol_version=version)
        return
    params, meta = failure
    call = Call(
        era="modern",
        protocol_version=version,
        request_id=rid,
        method=method,
        params=params,
        headers=ex.headers,
        principal=principal,
        client_host=ex.client_host,
        client_capabilities=meta[protocol.CLIENT_CAPABILITIES_META],
        progress_token=meta.get("progressToken"),
        log_level=meta.get(protocol.LOG_LEVEL_META),
        trace_id=ex.headers.get("traceparent", ""),
    )
    await _run(ex, call, sse_ok=sse_ok, cancel_on_disconnect=True)


def _unsupported(version: Any) -> RpcError:
    supported = [*MODERN_VERSIONS, *HANDSHAKE_VERSIONS[1:][::-1]]
    return RpcError(
        errors.UNSUPPORTED_PROTOCOL_VERSION,
        f"Unsupported protocol version {version!r}; supported: {', '.join(supported)}",
        {"supported": supported, "requested": version},
    )


def _decode_header(value: str | None) -> str | None:
    from mcp.shared.inbound import decode_header_value

    return decode_header_value(value)


def _modern_ladder(
    ex: Exchange, message: dict[str, Any], method: str, version: str
) -> RpcError | tuple[dict[str, Any], dict[str, Any]]:
    for name in ROUTING_HEADERS:
        if name in ex.duplicated:
            return RpcError(errors.HEADER_MISMATCH, f"{name} header appears more than once")
    params = message.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return RpcError(errors.INVALID_PARAMS, "params must be an object")
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        return RpcError(
            errors.INVALID_PARAMS,
            f"params._meta must be an object carrying {protocol.PROTOCOL_VERSION_META!r} and "
            f"{protocol.CLIENT_CAPABILITIES_META!r}",
        )
    missing = [k for k in (protocol.PROTOCOL_VERSION_META, protocol.CLIENT_CAPABILITIES_META) if k not in meta]
    if missing:
        return RpcError(errors.INVALID_PARAMS, f"params._meta is missing the required key(s): {', '.join(missing)}")
    body_version = meta[protocol.PROTOCOL_VERSION_META]
    if version != body_version:
        return RpcError(
            errors.HEADER_MISMATCH,
            "MCP-Protocol-Version header does not match params._meta's protocol version",
        )
    if ex.headers.get("mcp-method") != method:
        return RpcError(errors.HEADER_MISMATCH, "Mcp-Method header is missing or does not match the body's method")
    name_key = NAME_BEARING.get(method)
    if name_key is not None:
        body_value = params.get(name_key)
        if body_value is not None and _decode_header(ex.headers.get("mcp-name")) != body_value:
            return RpcError(
                errors.HEADER_MISMATCH, f"Mcp-Name header is missing or does not match the body's {name_key!r}"
            )
    if not isinstance(body_version, str):
        return RpcError(errors.INVALID_PARAMS, "the protocol version in params._meta must be a string")
    if body_version not in MODERN_VERSIONS:
        return _unsupported(body_version)
    if not isinstance(meta[protocol.CLIENT_CAPABILITIES_META], dict):
        return RpcError(errors.INVALID_PARAMS, f"params._meta[{protocol.CLIENT_CAPABILITIES_META!r}] must be an object")
    level = meta.get(protocol.LOG_LEVEL_META)
    if level is not None and level not in protocol.LOG_LEVELS:
        return RpcError(errors.INVALID_PARAMS, f"log level must be one of {', '.join(protocol.LOG_LEVELS)}")
    return params, meta


# ------------------------------------------------------------------------------------- handshake era


async def _session_for(ex: Exchange, principal: Any, version: str | None, rid: Any = None) -> sessions.Session | None:
    sid = ex.headers.get("mcp-session-id")
    if not sid:
        await _refuse(
            ex,
            400,
            RpcError(errors.INVALID_REQUEST, "Mcp-Session-Id header is required; call initialize first"),
            principal=principal,
            request_id=rid,
            protocol_version=version,
        )
        return None
    session = await sessions.session_get(sid)
    if session is None or session.principal_id != principal.id:
        await _refuse(
            ex,
            404,
            RpcError(
                errors.SESSION_NOT_FOUND,
                "Session not found (expired, deleted or not yours); start a new one with initialize",
            ),
            principal=principal,
            request_id=rid,
            protocol_version=version,
        )
        return None
    return session


async def _legacy(ex: Exchange, version: str | None) -> None:
    if ex.method not in {"POST", "GET", "DELETE"}:
        await ex.respond(405, headers=[(b"allow", b"GET, POST, DELETE")])
        return
    if ex.method == "GET" and "text/event-stream" not in ex.headers.get("accept", ""):
        await ex.respond(405, headers=[(b"allow", b"POST, DELETE")])
        return
    principal = await _authenticate(ex, version)
    if principal is None:
        return
    if ex.method == "GET":
        session = await _session_for(ex, principal, version)
        if session is not None:
            await _standalone_stream(ex, principal, session)
        return
    if ex.method == "DELETE":
        session = await _session_for(ex, principal, version)
        if session is not None:
            await sessions.session_delete(session)
            await _audit(ex, principal=principal, method="DELETE session", outcome="ok", session_id=session.id)
            await ex.respond(200)
        return
    _json_ok, sse_ok = _accepts(ex)
    message = await _read_message(ex, principal, version)
    if message is None:
        return
    method = message.get("method")
    if method is None and "id" in message and ("result" in message or "error" in message):
        session = await _session_for(ex, principal, version)
        if session is not None:  # the client answers a server-to-client request
            await sessions.reply_deliver(session.id, message["id"], message)
            await ex.respond(202)
        return
    if not _valid_method(method):
        await _refuse(
            ex,
            400,
            RpcError(errors.INVALID_REQUEST, "Invalid request: method must be a non-empty string"),
            principal=principal,
            protocol_version=version,
        )
        return
    if "id" not in message:
        await _legacy_notification(ex, principal, version, method, message)
        return
    rid = message["id"]
    if not _valid_id(rid):
        await _refuse(
            ex,
            400,
            RpcError(errors.INVALID_REQUEST, "Invalid request: id must be a string or a 64-bit integer"),
            principal=principal,
            protocol_version=version,
        )
        return
    params = message.get("params") or {}
    if not isinstance(params, dict):
        await _refuse(
            ex,
            200,
            RpcError(errors.INVALID_PARAMS, "params must be an object"),
            principal=principal,
            request_id=rid,
            method=method,
            protocol_version=version,
        )
        return
    if method == "initialize":
        await _initialize(ex, principal, rid, params)
        return
    session = await _session_for(ex, principal, version, rid)
    if session is None:
        return
    meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
    call = Call(
        era="legacy",
        protocol_version=version or session.protocol_version or "2025-03-26",
        request_id=rid,
        method=method,
        params=params,
        headers=ex.headers,
        principal=principal,
        client_host=ex.client_host,
        client_capabilities=session.client_capabilities,
        session=session,
        progress_token=meta.get("progressToken") if meta else None,
        log_level=session.log_level,
        trace_id=ex.headers.get("traceparent", ""),
    )
    await _run(ex, call, sse_ok=sse_ok, cancel_on_disconnect=False)


async def _initialize(ex: Exchange, principal: Any, rid: Any, params: dict[str, Any]) -> None:
    requested = params.get("protocolVersion")
    if not isinstance(requested, str):
        await _refuse(
            ex,
            200,
            RpcError(errors.INVALID_PARAMS, "initialize needs params.protocolVersion (e.g. 2025-11-25)"),
            principal=principal,
            request_id=rid,
            method="initialize",
        )
        return
    result = protocol.initialize_result(requested)
    client_info = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else {}
    caps = params.get("capabilities") if isinstance(params.get("capabilities"), dict) else {}
    session = await sessions.session_create(
        protocol_version=result["protocolVersion"],
        principal_id=principal.id,
        client_info=client_info or {},
        client_capabilities=caps or {},
    )
    await _audit(
        ex,
        principal=principal,
        method="initialize",
        outcome="ok",
        request_id=rid,
        protocol_version=result["protocolVersion"],
        session_id=session.id,
        detail=str((client_info or {}).get("name", "")),
    )
    await ex.respond_json(
        200, {"jsonrpc": "2.0", "id": rid, "result": result}, [(b"mcp-session-id", session.id.encode())]
    )


async def _legacy_notification(
    ex: Exchange, principal: Any, version: str | None, method: str, message: dict[str, Any]
) -> None:
    sid = ex.headers.get("mcp-session-id")
    if sid:
        session = await sessions.session_get(sid)
        if session is None or session.principal_id != principal.id:
            await _refuse(
                ex,
                404,
                RpcError(errors.SESSION_NOT_FOUND, "Session not found; start a new one with initialize"),
                principal=principal,
                method=method,
                protocol_version=version,
            )
            return
        if method == "notifications/cancelled":
            given = message.get("params")
            params = given if isinstance(given, dict) else {}
            task = _running.get((sid, orjson.dumps(params.get("requestId")).decode()))
            if task is not None:
                task.cancel()
    await ex.respond(202)


_JOB_EVENT_ID = re.compile(r"([0-9a-f]{12})\.job\.([0-9]{1,18})")


async def _standalone_stream(ex: Exchange, principal: Any, session: sessions.Session) -> None:
    """The GET stream: server notifications for the session, and `Last-Event-ID` resumption of any stream."""
    last = ex.headers.get("last-event-id")
    problem = sessions.event_id_problem(last) if last else None
    if problem:  # bad input, refused before the stream starts (and before Redis parses it)
        await _refuse(
            ex,
            400,
            RpcError(
                errors.INVALID_REQUEST,
                f"Invalid Last-Event-ID header: {problem}. Send back the id of the last SSE event you received "
                "on this session, or omit the header to start from now.",
            ),
            principal=principal,
            method="GET stream",
        )
        return
    await _audit(ex, principal=principal, method="GET stream", outcome="ok", session_id=session.id)
    await ex.sse_start()
    keepalive = config().keepalive_s
    disconnect = asyncio.ensure_future(ex.wait_disconnect())
    try:
        stream, cursor = "get", await sessions.events_tail(session)
        job_cursor = _JOB_EVENT_ID.fullmatch(last or "")
        if job_cursor:
            # A queued call's stream: resume from the job's own event log (any replica, after any restart).
            resume = protocol.job_stream_resume(session.id, principal, job_cursor[1], int(job_cursor[2]))
            async for event_id, message in resume:
                await ex.sse_send(sse_event(orjson.dumps(message), event_id))
            await ex.sse_send(b"", more=False)
            return
        if last:
            stream, replay = await sessions.events_after(session, last)
            stream = stream or "get"
            cursor = last.rpartition(".")[2] or cursor
            for event_id, payload in replay:
                await ex.sse_send(sse_event(payload, event_id))
                cursor = event_id.rpartition(".")[2]
                if stream != "get" and _is_response(payload):
                    await ex.sse_send(b"", more=False)
                    return
        while True:
            reader = asyncio.ensure_future(sessions.events_wait(session, cursor, keepalive))
            done, _ = await asyncio.wait({reader, disconnect}, return_when=asyncio.FIRST_COMPLETED)
            if disconnect in done:
                reader.cancel()
                return
            events = reader.result()
            if not events:
                await ex.sse_send(b": keep-alive\n\n")
            for event_id, event_stream, payload in events:
                cursor = event_id.rpartition(".")[2]
                if event_stream == stream:
                    await ex.sse_send(sse_event(payload, event_id))
                    if stream != "get" and _is_response(payload):
                        await ex.sse_send(b"", more=False)
                        return
    except Exception:
        # Never raise after the response started: log, and end the stream normally below.
        logger.exception("GET stream of session %s failed", session.id)
        with contextlib.suppress(Exception):  # the client is gone; nothing left to tell it
            await ex.sse_send(b"", more=False)
    finally:
        disconnect.cancel()


def _is_response(payload: bytes) -> bool:
    message = orjson.loads(payload)
    return "method" not in message and ("result" in message or "error" in message)


# ------------------------------------------------------------------------------ running one request


# Methods that run user code (long, streaming, cancellable); the rest answer from memory and run inline.
_STREAMING_METHODS = frozenset({"tools/call", "prompts/get", "resources/read", "tasks/result"})


async def _run(ex: Exchange, call: Call, *, sse_ok: bool, cancel_on_disconnect: bool) -> None:
    """Dispatch `call`; answer JSON, or SSE once the handler emits (or runs long). Never raises after start."""
    if call.method not in _STREAMING_METHODS:
        outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            outcome.set_result(await protocol.dispatch(call))
        except Exception as exc:  # noqa: BLE001 - handed to _finish, which answers every failure
            outcome.set_exception(exc)
        await _finish(ex, call, outcome, "", False)
        return
    cfg = config()
    stream_id = uuid.uuid4().hex[:12]
    session = call.session
    gone = False

    async def emit(message: dict[str, Any], event_id: str | None = None) -> None:
        nonlocal gone
        payload = orjson.dumps(message)
        if event_id is None and session is not None:
            event_id = await sessions.event_record(session, stream_id, payload)
        if gone:
            return
        try:
            if not ex.started:
                await ex.sse_start()
            await ex.sse_send(sse_event(payload, event_id))
        except Exception:  # noqa: BLE001 - client gone; the handshake era keeps recording for resumption
            gone = True

    if sse_ok:
        call.emit = emit
    call.stream_id = stream_id
    call.cancel_event = asyncio.Event()
    key = None
    if call.era == "legacy" and session is not None:
        key = (session.id, orjson.dumps(call.request_id).decode())
    task = asyncio.ensure_future(protocol.dispatch(call))
    if key is not None:
        _running[key] = task
    disconnect = asyncio.ensure_future(ex.wait_disconnect())
    try:
        waiting: set[asyncio.Future[Any]] = {task, disconnect}
        while True:
            timeout = cfg.keepalive_s if ex.started else cfg.sse_after_s
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                break
            if disconnect in done:
                waiting.discard(disconnect)
                if cancel_on_disconnect:
                    # 2026-07-28: closing the response stream cancels the request.
                    call.cancel_event.set()
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    call.outcome, call.error_code = "error", "cancelled"
                    await _audit(ex, principal=call.principal, method=call.method, outcome="error", call=call)
                    return
                gone = True
                continue
            if sse_ok and not gone:
                try:
                    if ex.started:
                        await ex.sse_send(b": keep-alive\n\n")
                    else:
                        await ex.sse_start()
                except Exception:  # noqa: BLE001 - the client went away
                    gone = True
    finally:
        disconnect.cancel()
        if key is not None:
            _running.pop(key, None)
    await _finish(ex, call, task, stream_id, gone)


async def _finish(ex: Exchange, call: Call, task: asyncio.Future[Any], stream_id: str, gone: bool) -> None:
    status = 200
    headers: list[tuple[bytes, bytes]] = []
    try:
        result = task.result()
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": call.request_id, "result": result}
    except asyncio.CancelledError:
        call.outcome, call.error_code = "error", "cancelled"
        result = protocol.tool_error_result("cancelled", "The request was cancelled by the client.")
        message = {"jsonrpc": "2.0", "id": call.request_id, "result": result}
    except RpcError as exc:
        call.outcome = exc.outcome
        call.error_code = _error_code_name(exc.code)
        call.detail = exc.message
        message = {"jsonrpc": "2.0", "id": call.request_id, "error": exc.as_error()}
        table = errors.MODERN_HTTP_STATUS if call.era == "modern" else errors.LEGACY_HTTP_STATUS
        status = exc.http_status or table.get(exc.code, 200)
    except Exception as exc:
        dependency = outages.dependency_of(exc)
        if dependency is not None:
            outages.log_outage(dependency, exc, call.method)
            error = unavailable_error(dependency)
            call.outcome, call.error_code, call.detail = "error", "service_unavailable", f"{type(exc).__name__}: {exc}"
            message = {"jsonrpc": "2.0", "id": call.request_id, "error": error.as_error()}
            status, headers = 503, _retry_after_headers()
        else:
            logger.exception("%s failed (request %s)", call.method, call.request_id)
            call.outcome, call.error_code, call.detail = "error", "internal_error", f"{type(exc).__name__}: {exc}"
            message = {
                "jsonrpc": "2.0",
                "id": call.request_id,
                "error": {"code": errors.INTERNAL_ERROR, "message": "Internal error; it has been logged"},
            }
    await _audit(ex, principal=call.principal, method=call.method, outcome="ok", call=call)
    payload = orjson.dumps(message)
    if not ex.started:
        await ex.respond(status, payload, headers)
        return
    event_id = call.response_event_id
    if event_id is None and call.session is not None:
        event_id = await sessions.event_record(call.session, stream_id, payload)
    if gone:
        return
    with contextlib.suppress(Exception):  # client gone after the result was recorded for resumption
        await ex.sse_send(sse_event(payload, event_id), more=False)
