"""`make run` under test: the supervisor on its own embedded services, VAR_DIR and port, and a plain MCP client.

The client speaks the 2026-07-28 era (stateless), so a gateway restart costs it nothing but the calls in flight.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from mcpplat import embedded

ROOT = Path(__file__).resolve().parents[2]
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the suite's output
MODERN = "2026-07-28"
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
_DROPPED_ENV = {"MCPPLAT_EMBEDDED_CHILD", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "DRAMATIQ_BROKER_URL"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def until(condition: Callable[[], object], timeout: float, interval: float = 0.1) -> float:
    """Wait until `condition()` is truthy (exceptions count as not yet); the seconds it took. Raises after `timeout`."""
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except Exception:  # noqa: BLE001, S110 - the platform is recovering: any failure means "not yet"
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not recovered within {timeout} s")
        time.sleep(interval)


class CallFailed(RuntimeError):
    pass


@dataclass
class Platform:
    var: Path
    port: int = field(default_factory=free_port)
    command: str = "run_platform"
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    _ids: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.var / "platform.log"

    def env(self) -> dict[str, str]:
        environment = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        environment.update(
            VAR_DIR=str(self.var),
            PORT=str(self.port),
            BIND="127.0.0.1",
            PUBLIC_BASE_URL=self.base,
            RUNS_EXTRA_TOOL_MODULES="tests.chaos.tools",
            EMBEDDING_BACKEND="none",
            EMBEDDING_WARM_AT_START="false",
            SANDBOX_POOL_SIZE="0",
            BROWSER_WARM_CONTEXTS="0",
        )
        return environment

    def start(self, timeout: float = 240) -> float:
        self.var.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", self.command],
                cwd=ROOT,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        until(lambda: self.proc.poll() is not None or self._token_printed(), timeout)
        if self.proc.poll() is not None:
            raise RuntimeError(f"the platform did not start: {self.log_text()[-3000:]}")
        until(self.ready, timeout)
        return time.monotonic() - started

    def _token_printed(self) -> bool:
        found = re.search(r'"Authorization": "Bearer ([^"]+)"', self.log_text())
        if found:
            self.token = found.group(1)
        return bool(found)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ready(self) -> bool:
        return httpx.get(f"{self.base}/readyz", timeout=3).status_code == 200

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> float:
        """Signal the supervisor (as Ctrl-C does) and wait for it; the seconds it took."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return time.monotonic() - started

    # ------------------------------------------------------------------------------------------- processes

    def children(self) -> dict[str, psutil.Process]:
        """The supervisor's children by their `make run` name (gateway, worker.<queue>, scheduler)."""
        assert self.proc is not None
        named = {}
        for child in psutil.Process(self.proc.pid).children():
            cmdline = child.cmdline()
            if "daphne" in cmdline:
                named["gateway"] = child
            elif "run_scheduler" in cmdline:
                named["scheduler"] = child
            elif "--queues" in cmdline:
                named[f"worker.{cmdline[cmdline.index('--queues') + 1]}"] = child
        return named

    def worker_process(self, queue: str) -> psutil.Process:
        """The dramatiq worker process (the one holding the messages) under the pool's main process."""
        (worker,) = self.children()[f"worker.{queue}"].children()
        return worker

    def embedded_pid(self, name: str) -> int:
        p = embedded.paths(str(self.var))
        if name == "redis":
            return int(p.redis_pidfile.read_text().strip())
        return int((p.pgdata / "postmaster.pid").read_text().splitlines()[0])

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(embedded.redis_url(embedded.paths(str(self.var))), socket_timeout=3)

    # ---------------------------------------------------------------------------------------------- client

    def rpc(self, method: str, params: dict[str, Any], *, name: str | None = None, timeout: float = 30) -> Any:
        """One JSON-RPC request; its result, or CallFailed naming the status or error."""
        response = self.post(method, params, name=name, timeout=timeout)
        if response.status_code != 200:
            raise CallFailed(f"HTTP {response.status_code}: {response.text[:200]}")
        message = _final_message(response)
        if "error" in message:
            raise CallFailed(f"JSON-RPC error {message['error']}")
        return message["result"]

    def post(self, method: str, params: dict[str, Any], *, name: str | None = None, timeout: float = 30) -> Any:
        """One JSON-RPC request on the 2026-07-28 wire; the HTTP response as it came."""
        self._ids += 1
        headers = {
            "authorization": f"Bearer {self.token}",
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": MODERN,
            "mcp-method": method,
        }
        if name:
            headers["mcp-name"] = name
        body = {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}
        return httpx.post(f"{self.base}/mcp", json=body, headers=headers, timeout=timeout)

    def tool_post(self, tool: str, arguments: dict[str, Any], *, timeout: float = 30) -> httpx.Response:
        meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
        return self.post(
            "tools/call", {"name": tool, "arguments": arguments, "_meta": meta}, name=tool, timeout=timeout
        )

    def call(self, tool: str, arguments: dict[str, Any], *, task: bool = False, timeout: float = 30) -> Any:
        capabilities: dict[str, Any] = {"extensions": {TASKS_EXTENSION: {}}} if task else {}
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": capabilities,
        }
        result = self.rpc(
            "tools/call", {"name": tool, "arguments": arguments, "_meta": meta}, name=tool, timeout=timeout
        )
        if not task and result.get("isError"):
            raise CallFailed(f"tool error {result}")
        return result

    def submit(self, tool: str, arguments: dict[str, Any]) -> str:
        """A queued call answered with a task: acknowledged; its id."""
        result = self.call(tool, arguments, task=True)
        if result.get("resultType") != "task":
            raise CallFailed(f"expected a task, got {result}")
        return str(result["task"]["taskId"])

    def task_status(self, task_id: str) -> str:
        meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
        return str(self.rpc("tasks/get", {"taskId": task_id, "_meta": meta}, timeout=10)["status"])


def _final_message(response: httpx.Response) -> dict[str, Any]:
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        return dict(response.json())
    final: dict[str, Any] = {}
    for line in response.text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            message = json.loads(line[5:])
            if "result" in message or "error" in message:
                final = message
    if not final:
        raise CallFailed("the stream ended without a result")
    return final


@dataclass
class Load:
    """A client calling all the time in a thread: inline calls and acknowledged (task) submissions."""

    platform: Platform
    ok: int = 0
    failed: int = 0
    acknowledged: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                if n % 2:
                    self.platform.call("platform.whoami", {}, timeout=10)
                else:
                    self.acknowledged.append(self.platform.submit("chaos.default", {"nonce": n}))
                self.ok += 1
            except (CallFailed, httpx.HTTPError) as exc:
                self.failed += 1
                self.failures.append(str(exc)[:300])
                time.sleep(0.2)
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(30)
