"""The reference: the official SDK's MCPServer with an in-memory tool equivalent to platform.whoami, served in
stateless JSON mode (2026-07-28 requests). Wrapped so servers without ASGI lifespan (daphne) still start the
SDK's session manager."""

from __future__ import annotations

import asyncio
from typing import Any

from mcp.server import MCPServer

server = MCPServer("sdk-bench")
TOOLS = ["platform.whoami"]


@server.tool(name="platform.whoami", description="Caller identity, roles, scopes and permitted tools.")
def whoami() -> dict[str, Any]:
    return {
        "id": "service:1",
        "name": "bench",
        "kind": "service",
        "identity_source": "api_token",
        "roles": ["bench"],
        "scopes": [],
        "tools": TOOLS,
    }


_starlette = server.streamable_http_app(json_response=True, stateless_http=True)
_ready: asyncio.Future[None] | None = None


async def _hold_lifespan(ready: asyncio.Future[None]) -> None:
    async with _starlette.router.lifespan_context(_starlette):
        ready.set_result(None)
        await asyncio.Event().wait()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _ready  # noqa: PLW0603
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if _ready is None:
        _ready = asyncio.get_running_loop().create_future()
        app.holder = asyncio.ensure_future(_hold_lifespan(_ready))  # type: ignore[attr-defined]
    await _ready
    await _starlette(scope, receive, send)
