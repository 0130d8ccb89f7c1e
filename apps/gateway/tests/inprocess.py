"""Drive the `/mcp` ASGI app in-process, as a client would, and read what it answered (JSON or SSE)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import orjson

from apps.gateway.transport import app

MODERN = "2026-07-28"
HANDSHAKE = "2025-11-25"
ACCEPT = "application/json, text/event-stream"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def messages(self) -> list[Any]:
        """The JSON-RPC messages of the body: one JSON object, or the `data:` lines of an SSE stream."""
        if self.headers.get("content-type", "").startswith("text/event-stream"):
            return [orjson.loads(line[6:]) for line in self.body.split(b"\n") if line.startswith(b"data: ")]
        return [orjson.loads(self.body)] if self.body else []

    def final(self) -> dict[str, Any]:
        """The response (the last message with a result or an error)."""
        found = [m for m in self.messages() if isinstance(m, dict) and ("result" in m or "error" in m)]
        assert found, f"no JSON-RPC response in {self.status} {self.body[:500]!r}"
        return found[-1]


async def call_app(
    method: str,
    headers: dict[str, str],
    body: bytes = b"",
    *,
    client: str = "127.0.0.1",
    timeout: float = 60.0,
) -> Answer:
    """One exchange; the client stays connected until the response ends (a disconnect would cancel the call)."""
    scope = {
        "type": "http",
        "method": method,
        "path": "/mcp",
        "headers": [(k.lower().encode("latin-1"), v.encode()) for k, v in headers.items()],
        "client": (client, 40000),
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    try:
        await asyncio.wait_for(app(scope, receive, send), timeout)
    finally:
        finished.set()
    start = sent[0]
    out_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return Answer(start["status"], out_headers, b"".join(m.get("body", b"") for m in sent[1:]))


def meta(capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": capabilities or {},
    }


def modern_headers(token: str, method: str, name: str | None = None) -> dict[str, str]:
    headers = {
        "host": "127.0.0.1:8000",
        "authorization": f"Bearer {token}",
        "accept": ACCEPT,
        "content-type": "application/json",
        "mcp-protocol-version": MODERN,
        "mcp-method": method,
    }
    if name is not None:
        headers["mcp-name"] = name
    return headers


async def modern_tool_call(token: str, name: str, arguments: Any, request_id: Any = 1) -> Answer:
    """`tools/call` on the 2026-07-28 wire; a queued tool is asked for as a task (it answers without a worker)."""
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {
            "name": name,
            "arguments": arguments,
            "_meta": meta({"extensions": {"io.modelcontextprotocol/tasks": {}}}),
        },
    }
    return await call_app("POST", modern_headers(token, "tools/call", name), encode(body))


def encode(message: Any) -> bytes:
    """JSON as a careless client sends it: Python's encoder writes integers of any size (orjson stops at 64 bits)."""
    return json.dumps(message).encode()


async def handshake_session(token: str) -> dict[str, str]:
    """Headers of an initialized 2025-11-25 session."""
    headers = {**modern_headers(token, "initialize"), "mcp-protocol-version": HANDSHAKE}
    del headers["mcp-method"]
    body = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    answer = await call_app("POST", headers, encode(body))
    assert answer.status == 200, answer.body
    return {**headers, "mcp-session-id": answer.headers["mcp-session-id"]}
