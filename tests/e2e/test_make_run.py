"""`make run`'s platform (manage.py run_platform on its own embedded PostgreSQL and Redis, nothing shared with the
suite) serves all four capabilities to the official MCP Python SDK client, with the token it prints."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port
from tests.e2e.test_sdk_client import connect

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PAGE = b"""<html><head><title>Opening hours</title></head><body>
<h1>Opening hours</h1><p id="hours">The shop opens at nine.</p><a href="/more">More</a></body></html>"""
MORE = b"<html><head><title>More</title></head><body><p>Closed on Sundays.</p></body></html>"


class _Site(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = MORE if self.path == "/more" else PAGE
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Platform:
    def __init__(self) -> None:
        self.var = Path(tempfile.mkdtemp(prefix="mcpplat-run-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        dropped = {"DJANGO_SETTINGS_MODULE", "MCPPLAT_TEST_WORKER_DB", "DATABASE_URL", "REDIS_URL", "SANDBOX_SCOPE"}
        self.env = {k: v for k, v in os.environ.items() if k not in dropped}
        self.env.update(VAR_DIR=str(self.var), PORT=str(self.port), BIND="127.0.0.1", PUBLIC_BASE_URL=self.base)
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_platform"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def token(self) -> str:
        text = self.output()
        start = text.index("{", text.index("client configuration"))
        config, _ = json.JSONDecoder().raw_decode(text[start:])
        return config["mcpServers"]["mcpplat"]["headers"]["Authorization"].removeprefix("Bearer ")

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            subprocess.run(
                [sys.executable, "manage.py", "embedded", "stop"], cwd=ROOT, env=self.env, capture_output=True
            )
            shutil.rmtree(self.var, ignore_errors=True)


@pytest.fixture
def platform():
    started = Platform()
    yield started
    started.stop()


@pytest.fixture
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _ready(platform: Platform, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        assert platform.proc.poll() is None, platform.output()[-4000:]
        try:
            response = httpx.get(f"{platform.base}/readyz", timeout=5)
            body = response.json()
            if response.status_code == 200 and all(c["ok"] for c in body["capabilities"].values()):
                return body
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready: {body}\n{platform.output()[-4000:]}")


async def test_make_run_serves_all_four_capabilities(platform, site):
    # given the platform as `make run` starts it, ready with every capability
    ready = _ready(platform)
    assert ready["capabilities"]["embeddings"]["loaded"] is True
    token = platform.token()
    # and a browser policy letting the admin role reach the local test page (internal addresses are refused else)
    port = site.server_address[1]
    platform.manage(
        "shell",
        "-c",
        "from apps.browser.models import BrowserPolicy; "
        f"BrowserPolicy.objects.create(role='admin', allow='*', allow_internal='127.0.0.1:{port}')",
    )
    async with connect(f"{platform.base}/mcp", token, "legacy") as client:
        # when the agent uses each capability through the official SDK client
        box = (await client.call_tool("sandbox.create", {})).structured_content
        ran = await client.call_tool("sandbox.exec", {"sandbox_id": box["sandbox_id"], "code": "print(6 * 7)"})
        opened = (await client.call_tool("browser.open", {"url": f"http://127.0.0.1:{port}/"})).structured_content
        acted = await client.call_tool(
            "browser.act", {"session": opened["session"], "action": "click", "role": "link", "name": "More"}
        )
        extracted = await client.call_tool("browser.extract", {"session": opened["session"], "what": ["text"]})
        stored = await client.call_tool(
            "memory.store", {"items": [{"content": "Bike parking is in the courtyard behind the building."}]}
        )
        first = (
            await client.call_tool("memory.search", {"query": "where can I leave my bicycle", "top_k": 1})
        ).structured_content
        found: dict = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the memory worker embeds it within moments
            found = (
                await client.call_tool("memory.search", {"query": "where can I leave my bicycle", "top_k": 1})
            ).structured_content
            if found["hits"] and found["hits"][0]["scores"].get("vector_rank") == 1:
                break
            time.sleep(0.2)
    # then each answered its first call with real work
    assert ran.is_error is False, ran.content
    assert ran.structured_content["exit_code"] == 0
    assert ran.structured_content["stdout"].strip() == "42"
    assert opened["title"] == "Opening hours"
    assert acted.is_error is False, acted.content
    assert extracted.is_error is False, extracted.content
    assert "Closed on Sundays." in json.dumps(extracted.structured_content)
    assert stored.is_error is False, stored.content
    assert found["hits"][0]["content"] == "Bike parking is in the courtyard behind the building."
    assert found["hits"][0]["scores"]["vector_rank"] == 1
    assert found.get("degraded") is None
    # and no search ran text-only because a model was loading: the very first query was embedded
    assert first.get("degraded") is None, first
    # and the platform stops cleanly on Ctrl-C
    assert platform.stop() == 0
    assert "Traceback" not in platform.output()
