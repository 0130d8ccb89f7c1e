"""Raw HTTP against /mcp: every bad input gets the status and JSON-RPC error the spec requires, never a 500."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"


def meta(version: str = MODERN) -> dict:
    return {"io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}}


def modern_headers(token: str, method: str, name: str | None = None, **extra: str) -> dict[str, str]:
    headers = {
        "authorization": f"Bearer {token}",
        "accept": ACCEPT,
        "content-type": "application/json",
        "mcp-protocol-version": MODERN,
        "mcp-method": method,
    }
    if name is not None:
        headers["mcp-name"] = name
    headers.update(extra)
    return headers


def whoami_body(request_id: object = 1, **params: object) -> dict:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "platform.whoami", "arguments": {}, "_meta": meta(), **params},
    }


def post(server, headers: dict[str, str], body: object = None, content: bytes | None = None) -> httpx.Response:
    if content is None:
        return httpx.post(server.url, json=body, headers=headers, timeout=10)
    return httpx.post(server.url, content=content, headers=headers, timeout=10)


def legacy_session(server, token: str) -> str:
    response = httpx.post(
        server.url,
        json={
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        headers={"authorization": f"Bearer {token}", "accept": ACCEPT, "content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["result"]["protocolVersion"] == "2025-11-25"
    return response.headers["mcp-session-id"]


def legacy_headers(token: str, session: str | None) -> dict[str, str]:
    headers = {
        "authorization": f"Bearer {token}",
        "accept": ACCEPT,
        "content-type": "application/json",
        "mcp-protocol-version": "2025-11-25",
    }
    if session:
        headers["mcp-session-id"] = session
    return headers


def test_unauthenticated_gets_401_with_resource_metadata_challenge(mcp_server, callers):
    # when / then: no token, and a forged one
    for authorization in (None, "Bearer mcpp_AAAAAAAAAAAA_forgedforgedforgedforged"):
        headers = modern_headers(callers.e2e, "tools/call", "platform.whoami")
        if authorization is None:
            del headers["authorization"]
        else:
            headers["authorization"] = authorization
        response = post(mcp_server, headers, whoami_body())
        assert response.status_code == 401
        assert response.json()["error"]["code"] == 40100
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        assert f'resource_metadata="{mcp_server.base}/.well-known/oauth-protected-resource/mcp"' in challenge


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("malformed json", 400, -32700),
        ("batch", 400, -32600),
        ("not an object", 400, -32600),
        ("wrong content type", 415, -32600),
        ("oversized", 413, 41300),
        ("unknown method", 404, -32601),
        ("initialize on modern wire", 404, -32601),
        ("ping on modern wire", 404, -32601),
        ("missing _meta", 400, -32602),
        ("missing capabilities", 400, -32602),
        ("unsupported version", 400, -32022),
        ("version header mismatch", 400, -32020),
        ("missing Mcp-Method", 400, -32020),
        ("Mcp-Name mismatch", 400, -32020),
        ("duplicated Mcp-Method", 400, -32020),
        ("unknown tool", 400, -32602),
        ("bad cursor", 400, -32602),
        ("arguments not an object", 400, -32602),
    ],
)
def test_modern_bad_input(mcp_server, callers, case, status, code):
    # given a well-formed request to start from
    token = callers.e2e
    headers = modern_headers(token, "tools/call", "platform.whoami")
    body: object = whoami_body()
    content = None
    if case == "malformed json":
        content = b'{"jsonrpc": "2.0", "id": 1,'
    elif case == "batch":
        body = [whoami_body(1), whoami_body(2)]
    elif case == "not an object":
        body = "tools/call"
    elif case == "wrong content type":
        headers["content-type"] = "text/plain"
    elif case == "oversized":
        content = b'{"x": "' + b"a" * (4 * 1024 * 1024 + 10) + b'"}'
    elif case == "unknown method":
        headers["mcp-method"] = "tools/explode"
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/explode", "params": {"_meta": meta()}}
    elif case in {"initialize on modern wire", "ping on modern wire"}:
        method = case.split()[0]
        headers["mcp-method"] = method
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"_meta": meta()}}
    elif case == "missing _meta":
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "platform.whoami"}}
    elif case == "missing capabilities":
        body = whoami_body(_meta={"io.modelcontextprotocol/protocolVersion": MODERN})
    elif case == "unsupported version":
        headers["mcp-protocol-version"] = "2099-01-01"
        body = whoami_body(_meta=meta("2099-01-01"))
    elif case == "version header mismatch":
        body = whoami_body(_meta=meta("2099-01-01"))
    elif case == "missing Mcp-Method":
        del headers["mcp-method"]
    elif case == "Mcp-Name mismatch":
        headers["mcp-name"] = "platform.other"
    elif case == "duplicated Mcp-Method":
        headers = [*headers.items(), ("mcp-method", "tools/call")]  # type: ignore[assignment]
    elif case == "unknown tool":
        headers["mcp-name"] = "platform.nope"
        body = whoami_body(name="platform.nope")
    elif case == "bad cursor":
        headers = modern_headers(token, "tools/list")
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": "%%%", "_meta": meta()}}
    elif case == "arguments not an object":
        body = whoami_body(arguments=[1, 2])
    # when
    response = post(mcp_server, headers, body, content)
    # then
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    if case == "unsupported version":
        assert error["data"]["requested"] == "2099-01-01"
        assert "2026-07-28" in error["data"]["supported"]
    if status == 400 and code in {-32020, -32022, -32602} and case != "missing _meta":
        assert response.json()["id"] == 1


def test_modern_get_and_delete_are_405(mcp_server, callers):
    for method in ("GET", "DELETE"):
        response = httpx.request(method, mcp_server.url, headers=modern_headers(callers.e2e, "x"), timeout=10)
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"


def test_modern_notification_is_202_without_body(mcp_server, callers):
    body = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}
    response = post(mcp_server, modern_headers(callers.e2e, "notifications/cancelled"), body)
    assert response.status_code == 202
    assert response.content == b""


def test_modern_base64_mcp_name_and_discover(mcp_server, callers):
    # given an Mcp-Name in the base64 sentinel form
    encoded = "=?base64?" + base64.b64encode(b"platform.whoami").decode() + "?="
    response = post(mcp_server, modern_headers(callers.e2e, "tools/call", encoded), whoami_body())
    assert response.status_code == 200
    assert response.json()["result"]["resultType"] == "complete"
    # and server/discover is cacheable and lists both eras
    discover = post(
        mcp_server,
        modern_headers(callers.e2e, "server/discover"),
        {"jsonrpc": "2.0", "id": "d", "method": "server/discover", "params": {"_meta": meta()}},
    ).json()["result"]
    assert discover["supportedVersions"][0] == MODERN
    assert "2025-11-25" in discover["supportedVersions"]
    assert discover["ttlMs"] >= 0
    assert discover["cacheScope"] == "public"
    assert discover["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcpplat"


def test_tools_list_pages_with_cursor(mcp_server, callers, settings):
    # given the admin sees every tool; pages hold 50, so ask through the cursor until the end
    headers = modern_headers(callers.admin, "tools/list")
    names, cursor = [], None
    for _ in range(10):
        params: dict = {"_meta": meta()}
        if cursor:
            params["cursor"] = cursor
        result = post(mcp_server, headers, {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": params}).json()
        names += [t["name"] for t in result["result"]["tools"]]
        assert result["result"]["cacheScope"] == "private"
        cursor = result["result"].get("nextCursor")
        if not cursor:
            break
    assert names == sorted(names)
    assert "platform.whoami" in names


@pytest.mark.parametrize(
    ("origin", "host", "status"),
    [
        ("http://evil.example", None, 403),
        (None, "evil.example", 421),
        ("http://evil.example", "evil.example", 421),
        ("same", None, 200),
    ],
)
def test_origin_and_host_protection(mcp_server, callers, origin, host, status):
    headers = modern_headers(callers.e2e, "tools/call", "platform.whoami")
    if origin == "same":
        origin = mcp_server.base
    if origin:
        headers["origin"] = origin
    if host:
        headers["host"] = host
    assert post(mcp_server, headers, whoami_body()).status_code == status


def test_legacy_session_lifecycle_and_errors(mcp_server, callers):
    token = callers.e2e
    session = legacy_session(mcp_server, token)
    tools_list = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    # initialized notification → 202, no body
    note = post(mcp_server, legacy_headers(token, session), {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert (note.status_code, note.content) == (202, b"")
    # ping → {}
    ping = post(mcp_server, legacy_headers(token, session), {"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert ping.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
    # no session → 400; unknown session → 404; another caller's session → 404
    assert post(mcp_server, legacy_headers(token, None), tools_list).status_code == 400
    assert post(mcp_server, legacy_headers(token, "nope"), tools_list).status_code == 404
    assert post(mcp_server, legacy_headers(callers.viewer, session), tools_list).status_code == 404
    # unknown method → JSON-RPC -32601
    unknown = post(mcp_server, legacy_headers(token, session), {"jsonrpc": "2.0", "id": 3, "method": "nope/nope"})
    assert unknown.json()["error"]["code"] == -32601
    # batch → 400
    assert post(mcp_server, legacy_headers(token, session), [tools_list]).status_code == 400
    # the session works, then DELETE ends it and it is gone
    assert post(mcp_server, legacy_headers(token, session), tools_list).status_code == 200
    deleted = httpx.delete(mcp_server.url, headers=legacy_headers(token, session), timeout=10)
    assert deleted.status_code == 200
    assert post(mcp_server, legacy_headers(token, session), tools_list).status_code == 404


def test_legacy_session_survives_in_redis_not_memory(mcp_server, callers, redis_client):
    # given a session: it lives in Redis (any replica can serve it)
    session = legacy_session(mcp_server, callers.e2e)
    assert redis_client.exists(f"mcpplat:mcp:session:{session}") == 1
    # when Redis forgets it, the gateway does too
    redis_client.delete(f"mcpplat:mcp:session:{session}")
    tools_list = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    assert post(mcp_server, legacy_headers(callers.e2e, session), tools_list).status_code == 404


def test_legacy_get_stream_resumes_after_last_event_id(mcp_server, callers):
    token = callers.e2e
    session = legacy_session(mcp_server, token)
    headers = legacy_headers(token, session)
    # given a streamed call whose events were recorded with ids
    call = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "tools/call",
        "params": {
            "name": "platform.e2e_count",
            "arguments": {"steps": 3, "delay_ms": 10},
            "_meta": {"progressToken": "p"},
        },
    }
    with httpx.stream("POST", mcp_server.url, json=call, headers=headers, timeout=10) as response:
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["x-accel-buffering"] == "no"
        lines = list(response.iter_lines())
    ids = [line[4:] for line in lines if line.startswith("id: ")]
    assert len(ids) == 4  # three progress notifications and the result
    # when the client resumes after the first event
    get_headers = {**headers, "accept": "text/event-stream", "last-event-id": ids[0]}
    with httpx.stream("GET", mcp_server.url, headers=get_headers, timeout=10) as resumed:
        replay = [line for line in resumed.iter_lines() if line.startswith("id: ")]
    # then it gets every later event, ending with the response
    assert [line[4:] for line in replay] == ids[1:]


def test_cors_preflight_and_exposed_headers(mcp_server, callers, settings):
    # given no CORS origins are configured, a cross-origin browser is refused
    response = httpx.options(
        mcp_server.url,
        headers={"origin": "http://localhost:6274", "access-control-request-method": "POST"},
        timeout=10,
    )
    assert response.status_code == 403


def test_sse_response_opens_with_comment_and_ends_with_result(mcp_server, callers):
    headers = modern_headers(callers.e2e, "tools/call", "platform.e2e_count")
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "platform.e2e_count", "arguments": {"steps": 2, "delay_ms": 700}, "_meta": meta()},
    }
    started = time.monotonic()
    with httpx.stream("POST", mcp_server.url, json=body, headers=headers, timeout=10) as response:
        chunks = list(response.iter_lines())
    # a silent call longer than MCP_SSE_AFTER_MS switches to SSE, opened by a comment, and ends with the result
    assert response.headers["content-type"] == "text/event-stream"
    assert chunks[0].startswith(":")
    assert '"counted":2' in [c for c in chunks if c.startswith("data: ")][-1]
    assert time.monotonic() - started >= 1.4


@pytest.mark.parametrize(
    ("caller", "tool", "expected"),
    [
        ("anonymous", "platform.whoami", 401),
        ("viewer", "platform.whoami", "ok"),
        ("viewer", "platform.e2e_echo", "denied"),
        ("e2e", "platform.e2e_echo", "ok"),
        ("admin", "platform.e2e_echo", "ok"),
        ("admin", "platform.whoami", "ok"),
    ],
)
def test_role_tool_matrix_and_audit(mcp_server, callers, caller, tool, expected):
    from apps.audit.models import AuditEvent

    # given a caller of one role
    token = getattr(callers, caller, "none")
    headers = modern_headers(token, "tools/call", tool)
    if caller == "anonymous":
        del headers["authorization"]
    arguments = {"text": "hi"} if tool == "platform.e2e_echo" else {}
    body = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": meta()},
    }
    # when it calls the tool
    response = post(mcp_server, headers, body)
    # then the answer matches its role, and the call is in the audit trail before the response arrived
    events = list(AuditEvent.objects.order_by("-sequence").values("method", "tool", "outcome", "error_code")[:1])
    if expected == 401:
        assert response.status_code == 401
        assert events == [{"method": "HTTP POST", "tool": "", "outcome": "denied", "error_code": "unauthenticated"}]
    elif expected == "denied":
        assert response.json()["error"]["code"] == 40300
        assert events == [
            {"method": "tools/call", "tool": tool, "outcome": "denied", "error_code": "permission_denied"}
        ]
    else:
        assert response.json()["result"]["isError"] is False
        assert events == [{"method": "tools/call", "tool": tool, "outcome": "ok", "error_code": ""}]
