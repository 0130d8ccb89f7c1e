"""One MCP tools/call over plain HTTP in the 2026-07-28 stateless shape (used by the gateway test and benchmark)."""

from __future__ import annotations

import json
from typing import Any

import httpx

MODERN = "2026-07-28"


def tools_call(name: str, arguments: dict[str, Any], token: str, request_id: int = 1) -> dict[str, Any]:
    """Keyword arguments for httpx's post(): the JSON-RPC body and the headers the era requires."""
    return {
        "json": {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {
                "name": name,
                "arguments": arguments,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": MODERN,
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            },
        },
        "headers": {
            "authorization": f"Bearer {token}",
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": MODERN,
            "mcp-method": "tools/call",
            "mcp-name": name,
        },
    }


def tool_result(response: httpx.Response, request_id: int = 1) -> dict[str, Any]:
    """The JSON-RPC result, whether the gateway answered with JSON or streamed it as SSE (slow calls)."""
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        messages = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
        return next(m["result"] for m in messages if m.get("id") == request_id)
    return response.json()["result"]
