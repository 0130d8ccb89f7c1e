"""The ASGI app driven in-process (no server): CORS for configured origins and the preflight."""

from __future__ import annotations

import pytest

from apps.gateway import config
from apps.gateway.transport import app


async def call_app(
    method: str, headers: dict[str, str], body: bytes = b"", client: str = "127.0.0.1"
) -> tuple[int, dict[str, str], bytes]:
    scope = {
        "type": "http",
        "method": method,
        "path": "/mcp",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": (client, 40000),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    out_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], out_headers, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
def cors_origin(settings):
    settings.MCP_CORS_ORIGINS = ["http://localhost:6274"]
    config.config.cache_clear()
    yield "http://localhost:6274"
    config.config.cache_clear()


async def test_cors_preflight_allows_mcp_headers(cors_origin):
    # when a configured browser origin sends a preflight asking for an Mcp-Param header
    status, headers, _ = await call_app(
        "OPTIONS",
        {
            "host": "127.0.0.1:8000",
            "origin": cors_origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, mcp-protocol-version, Mcp-Param-Region",
        },
    )
    # then it may send the MCP headers and read Mcp-Session-Id
    assert status == 204
    assert headers["access-control-allow-origin"] == cors_origin
    allowed = headers["access-control-allow-headers"]
    for name in (
        "Mcp-Session-Id",
        "MCP-Protocol-Version",
        "Mcp-Method",
        "Mcp-Name",
        "Last-Event-ID",
        "Mcp-Param-Region",
    ):
        assert name in allowed
    assert "Mcp-Session-Id" in headers["access-control-expose-headers"]


@pytest.mark.django_db(transaction=True)
async def test_cors_headers_ride_on_refusals_too(cors_origin):
    # when the configured origin calls without credentials
    status, headers, body = await call_app(
        "POST", {"host": "127.0.0.1:8000", "origin": cors_origin, "content-type": "application/json"}, b"{}"
    )
    # then the browser can read the 401 and its challenge
    assert status == 401
    assert headers["access-control-allow-origin"] == cors_origin
    assert "WWW-Authenticate" in headers["access-control-expose-headers"]
    assert b'"code":40100' in body


async def test_unconfigured_origin_is_forbidden(cors_origin):
    status, headers, body = await call_app("POST", {"host": "127.0.0.1:8000", "origin": "http://evil.example"})
    assert status == 403
    assert "access-control-allow-origin" not in headers
    assert b"MCP_ALLOWED_ORIGINS" in body


@pytest.mark.django_db(transaction=True)
async def test_an_address_over_its_failed_authentication_limit_gets_429_with_retry_after(settings, redis_client):
    # given a limit of 2 failed authentications per address and minute, both used up
    import json
    import time

    from apps.accounts.identity import identity_cache_clear
    from apps.audit.models import AuditEvent

    settings.MCP_AUTH_FAILURES_PER_MINUTE = 2
    identity_cache_clear()
    if time.time() % 60 > 58:  # the count is per clock minute: do not straddle one
        time.sleep(2.5)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()

    def headers(token: str) -> dict[str, str]:
        return {
            "host": "127.0.0.1:8000",
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2025-11-25",
            "authorization": f"Bearer mcpp_{token}_" + "x" * 43,
        }

    remote = "192.0.2.10"  # a TEST-NET address in the ASGI scope: nothing is sent anywhere
    for token in ("aaaaaaaaaaaa", "bbbbbbbbbbbb"):
        assert (await call_app("POST", headers(token), body, client=remote))[0] == 401
    # when a third, different credential comes from the same address, and one from loopback
    status, out, payload = await call_app("POST", headers("cccccccccccc"), body, client=remote)
    local = await call_app("POST", headers("dddddddddddd"), body)
    # then it is refused before verification, says when to retry, and the denial is audited
    assert status == 429
    assert 0 < int(out["retry-after"]) <= 60
    assert local[0] == 401  # loopback callers are local processes: never locked out
    error = json.loads(payload)["error"]
    assert error["data"]["reason"] == "too_many_failed_authentications"
    assert await AuditEvent.objects.filter(
        error_code="unauthenticated", detail__contains="failed authentications"
    ).aexists()
    identity_cache_clear()
