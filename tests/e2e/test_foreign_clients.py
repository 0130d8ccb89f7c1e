"""The gateway driven by foreign clients: the official MCP TypeScript SDK client (npm @modelcontextprotocol/sdk) and
the MCP Inspector's CLI, both pinned in tests/e2e/clients/package-lock.json (scripts/provision.d/20-node.sh)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests import capability

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CLIENTS = Path(__file__).resolve().parent / "clients"
NODE_BIN = CLIENTS / "node_modules" / "node" / "bin"
INSPECTOR = CLIENTS / "node_modules" / ".bin" / "mcp-inspector"


@pytest.fixture(scope="module")
def node() -> dict[str, str]:
    missing = [
        str(p)
        for p in (NODE_BIN / "node", INSPECTOR, CLIENTS / "node_modules" / "@modelcontextprotocol" / "sdk")
        if not p.exists()
    ]
    capability.require(
        "conformance",
        f"the foreign clients are not installed ({', '.join(missing)})" if missing else None,
        "run scripts/provision.d/20-node.sh",
    )
    return {**os.environ, "PATH": f"{NODE_BIN}:{os.environ['PATH']}", "HOME": str(CLIENTS)}


def ts_client(node: dict[str, str], url: str, token: str | None, scenario: str) -> dict:
    proc = subprocess.run(
        ["node", str(CLIENTS / "ts_client.mjs"), url, token or "-", scenario],
        env=node,
        cwd=CLIENTS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def inspector(node: dict[str, str], url: str, token: str, *args: str) -> dict:
    proc = subprocess.run(
        [str(INSPECTOR), "--cli", url, "--transport", "http", "--header", f"Authorization: Bearer {token}", *args],
        env=node,
        cwd=CLIENTS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    start = proc.stdout.index("{")
    return json.loads(proc.stdout[start:])


def test_typescript_sdk_lists_tools_and_calls_one(mcp_server, callers, node):
    # when the TypeScript SDK client connects with an agent's token, lists tools and asks who it is
    out = ts_client(node, mcp_server.url, callers.e2e, "tools")
    # then it negotiated the newest handshake-era version, sees exactly its tools and gets structured content
    assert "failure" not in out, out
    assert out["protocolVersion"] == "2025-11-25"
    assert out["tools"] == ["platform.e2e_count", "platform.e2e_echo", "platform.whoami"]
    assert out["isError"] is False
    assert out["whoami"]["name"] == "e2e-agent"
    assert out["whoami"]["roles"] == ["e2e"]


def test_typescript_sdk_receives_progress_in_order(mcp_server, callers, node):
    out = ts_client(node, mcp_server.url, callers.e2e, "progress")
    assert "failure" not in out, out
    assert out["result"] == {"counted": 3}
    assert out["progress"] == [[1, 3, "step 1 of 3"], [2, 3, "step 2 of 3"], [3, 3, "step 3 of 3"]]


def test_typescript_sdk_sees_a_bad_argument_named(mcp_server, callers, node):
    out = ts_client(node, mcp_server.url, callers.e2e, "bad_argument")
    # then the tool error names the field and the rule
    result = out["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] == "invalid_arguments"
    message = result["content"][0]["text"]
    assert "text: " in message
    assert "maxLength" in message


def test_typescript_sdk_without_a_token_is_refused_with_401(mcp_server, node):
    out = ts_client(node, mcp_server.url, None, "tools")
    assert out["failure"]["code"] == 401, out
    assert "Authorization: Bearer" in out["failure"]["message"]


def test_inspector_cli_lists_and_calls_tools(mcp_server, callers, node):
    # when the MCP Inspector's CLI lists tools and calls one
    listed = inspector(node, mcp_server.url, callers.e2e, "--method", "tools/list")
    called = inspector(
        node,
        mcp_server.url,
        callers.e2e,
        "--method",
        "tools/call",
        "--tool-name",
        "platform.e2e_echo",
        "--tool-arg",
        "text=hello",
    )
    # then it sees the agent's tools with their schemas, and the call answers
    assert sorted(t["name"] for t in listed["tools"]) == ["platform.e2e_count", "platform.e2e_echo", "platform.whoami"]
    assert all("inputSchema" in t for t in listed["tools"])
    assert called.get("isError") in (None, False), called
    assert "hello" in json.dumps(called)
