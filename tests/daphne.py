"""A real daphne serving `mcpplat.asgi:application` on a loopback port, for tests that talk HTTP to it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(
    python: str, port: int, environment: dict[str, str], *, timeout: float, extra: tuple[str, ...] = ()
) -> Iterator[str]:
    """daphne run by `python` until `/healthz` answers; yields the base URL; stops it (SIGTERM, then SIGKILL)."""
    argv = [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *extra, "mcpplat.asgi:application"]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=environment, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"daphne did not start: {proc.stderr.read().decode()[-3000:] if proc.stderr else ''}")
        time.sleep(0.1)
    try:
        yield base
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
