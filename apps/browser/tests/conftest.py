"""Fixtures for the browser tests: a loopback site, a connection recorder, a test policy, a fake DNS."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings

from apps.accounts.principal import Principal
from apps.browser.policy import system_resolve
from apps.browser.runtime import runtime
from apps.gateway.registry import ToolContext
from tests import capability

PAGES = {
    "/": """<html><head><title>Home</title></head><body>
        <h1>Welcome</h1><p>Intro <b>text</b> here.</p>
        <a href="/form">Form page</a> <a href="/table">Table page</a>
        </body></html>""",
    "/form": """<html><head><title>Form</title></head><body>
        <label>Name <input name="n"></label>
        <select aria-label="Colour" name="c"><option value="r">red</option><option value="g">green</option></select>
        <button type="button" onclick="document.getElementById('out').textContent = 'hello '
          + document.querySelector('input').value + ' ' + document.querySelector('select').value">Greet</button>
        <button type="button" onclick="document.body.innerHTML = '<p>replaced</p>'">Replace</button>
        <p id="out">nothing yet</p><a href="/">Home link</a>
        </body></html>""",
    "/table": """<html><head><title>Prices</title></head><body>
        <h2>Price list</h2>
        <table id="prices"><tr><th>Item</th><th>Price</th></tr>
        <tr><td class="item">Apple</td><td class="price">1.50</td></tr>
        <tr><td class="item">Pear</td><td class="price">2.25</td></tr></table>
        <p class="count">2 items</p></body></html>""",
}


class _Site(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        if parts.path in PAGES:
            return self._send(200, PAGES[parts.path])
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query["to"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if parts.path == "/set-cookie":
            self.send_response(200)
            self.send_header("Set-Cookie", f"who={query['v']}; Path=/")
            body = b"<html><title>set</title><body>set</body></html>"
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None
        if parts.path == "/show-cookie":
            return self._send(200, f"<html><title>cookie</title><body><p id=c>{self.headers.get('Cookie', 'none')}</p>")
        if parts.path == "/file":
            body = b"not for you"
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Disposition", "attachment; filename=report.bin")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None
        if parts.path == "/downloads":
            return self._send(200, '<html><title>Downloads</title><body><a href="/file">Get the report</a></body>')
        if parts.path == "/never":
            time.sleep(30)
            return None
        if parts.path == "/attack":  # a page whose scripts reach for internal addresses
            target = query["target"]
            return self._send(
                200,
                f"""<html><head><title>attack</title><link rel=preconnect href="{target}">
                <link rel=stylesheet href="{target}/style.css"></head><body>
                <iframe src="{target}/frame"></iframe><img src="{target}/img.png">
                <script>
                  fetch("{target}/fetch").catch(() => {{}});
                  const x = new XMLHttpRequest(); x.open("GET", "{target}/xhr"); x.send();
                  try {{ new WebSocket("{target.replace("http", "ws")}/ws"); }} catch (e) {{}}
                  navigator.sendBeacon && navigator.sendBeacon("{target}/beacon", "x");
                </script><p>attack page</p></body></html>""",
            )
        return self._send(404, "<html><title>missing</title>not here</html>")

    def _send(self, status: int, html: str) -> None:
        body = html.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="session")
def chromium() -> str:
    path = settings.BROWSER_EXECUTABLE
    capability.require(
        "browser",
        None if Path(path).exists() else f"Chromium is not installed at {path}",
        "run scripts/provision.d/40-chromium.sh as root",
    )
    return path


@pytest.fixture(scope="session")
def site() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    server.daemon_threads = True
    server.hits = []  # type: ignore[attr-defined]
    server.base = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


class Recorder:
    """A loopback listener that records every connection made to it: the SSRF tests expect none."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.port = self.sock.getsockname()[1]
        self.connections: list[bytes] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(1)
            try:
                self.connections.append(conn.recv(200))
            except OSError:
                self.connections.append(b"")
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


class FakeDNS:
    """Named fake: resolves chosen names to addresses we must never actually contact from here
    (metadata, private ranges); every other name goes to the system resolver. Records lookups."""

    def __init__(self, table: dict[str, list[str]]):
        self.table = table
        self.lookups: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.lookups.append(host)
        if host in self.table:
            return self.table[host]
        return await system_resolve(host)


@pytest.fixture
def fake_dns() -> Iterator[FakeDNS]:
    dns = FakeDNS(
        {
            "metadata.test": ["169.254.169.254"],
            "intranet.test": ["10.1.2.3"],
            "router.test": ["192.168.1.1"],
            "cgnat.test": ["100.64.0.1"],
            "v6local.test": ["fd00::1"],
            "mapped.test": ["::ffff:127.0.0.1"],
            "mixed.test": ["93.184.216.34", "10.0.0.5"],  # one public, one private: refused as a whole
        }
    )
    runtime.resolver = dns
    yield dns
    runtime.resolver = system_resolve


@pytest.fixture
def policy(db: Any, site: Any) -> Any:
    from apps.browser.models import BrowserPolicy

    port = site.server_address[1]
    return BrowserPolicy.objects.create(
        role="tester",
        allow="*",
        deny="denied.test",
        allow_internal=f"127.0.0.1:{port}",
        max_sessions=3,
    )


class CallContext(ToolContext):
    """The ToolContext a handler sees, built by hand until the jobs runtime (branch `runs`) provides one."""

    def __init__(self, principal: Principal):
        self.principal = principal
        self.job_id = None

    def cancelled(self) -> bool:
        return False


def make_principal(ident: str = "test:browser", roles: tuple[str, ...] = ("tester",)) -> Principal:
    return Principal(
        id=ident,
        kind="test",
        name=ident,
        identity_source="internal",
        roles=frozenset(roles),
        grants=frozenset({"browser.*"}),
    )


@pytest.fixture
def ctx(policy: Any) -> CallContext:
    return CallContext(make_principal())


@pytest.fixture
def browser(chromium: str, redis_client: Any, policy: Any) -> Iterator[Any]:
    """A clean slate: no leases, and every session this process opened is closed after the test."""
    yield runtime
    for session_id in list(runtime.sessions):
        runtime.call(lambda sid=session_id: runtime.session_close(sid, reason="test teardown"), timeout=15)


@pytest.fixture(scope="session", autouse=True)
def _stop_runtime() -> Iterator[None]:
    yield
    from apps.browser.services import housekeeper

    housekeeper.stop()
    runtime.stop()
