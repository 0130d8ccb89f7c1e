"""The egress proxy: the only way a browser context reaches the network.

Each session's context is created with `proxy=http://127.0.0.1:<port>` pointing at its own listener here, so
every connection Chromium makes for that context — navigations, redirect hops, subresources, fetch/XHR,
iframes, preconnects, WebSockets — arrives here first as `CONNECT host:port` (TLS, wss) or an absolute-form
`GET http://…` (plain http). We resolve the name ourselves, check every address against the policy, and
connect to the address we checked (pinned), so DNS rebinding between check and connect is impossible.
Blocked requests get a 403 and are recorded on the session before any upstream socket is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from apps.browser.policy import DomainPolicy, PolicyError, Resolver, parse_target, resolve_checked

log = logging.getLogger(__name__)

_HEAD_LIMIT = 64 * 1024
_HOP_HEADERS = {b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive"}


@dataclass
class EgressProxy:
    policy: DomainPolicy
    resolver: Resolver
    on_block: Callable[[PolicyError], None]
    connect_timeout_s: float = 10.0
    server: asyncio.Server | None = None
    port: int = 0

    async def start(self) -> EgressProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=_HEAD_LIMIT)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        try:
            await self._serve(head, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("browser egress proxy failed")
        finally:
            writer.close()

    async def _serve(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line, _, header_block = head.partition(b"\r\n")
        try:
            method, target_text, version = request_line.decode("latin-1").split(" ", 2)
        except ValueError:
            await _reply(writer, 400, "malformed proxy request")
            return
        if method == "CONNECT":
            host, _, port = target_text.rpartition(":")
            url = f"https://{host}:{port}"  # TLS or wss: we see only host and port
        else:
            url = target_text
        try:
            target = parse_target(url)
            address = await resolve_checked(self.policy, target, self.resolver)
        except PolicyError as block:
            block.url = block.url or url
            self.on_block(block)
            await _reply(writer, 403, f"blocked by the browser domain policy: {block.detail}")
            return
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(str(address), target.port), self.connect_timeout_s
            )
        except (OSError, TimeoutError) as exc:
            await _reply(writer, 502, f"could not connect to {target.host}:{target.port}: {exc}")
            return
        try:
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                upstream_writer.write(_origin_form(method, target_text, version, header_block))
                await upstream_writer.drain()
            await _pipe_both(reader, writer, upstream_reader, upstream_writer)
        finally:
            upstream_writer.close()


def _origin_form(method: str, url: str, version: str, header_block: bytes) -> bytes:
    """Rewrite an absolute-form proxy request for the origin: path only, no proxy headers, one request."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {path} {version}".encode("latin-1")]
    for line in header_block.split(b"\r\n"):
        if not line:
            continue
        name = line.split(b":", 1)[0].strip().lower()
        if name not in _HOP_HEADERS:
            lines.append(line)
    # One request per upstream connection: a kept-alive proxy connection could otherwise carry the browser's
    # next request (to another host) to this one.
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _reply(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    body = message.encode()
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Mcpplat-Blocked: "
        f"{'1' if status == 403 else '0'}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if dst.can_write_eof():
                dst.write_eof()


async def _pipe_both(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    up = asyncio.create_task(_copy(client_reader, upstream_writer))
    down = asyncio.create_task(_copy(upstream_reader, client_writer))
    # Either side closing ends the exchange (the origin finished, or the browser gave the connection up).
    _, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
