"""Sandbox latency through the gateway: `sandbox.create` → first `sandbox.exec` result, and a warm exec round trip,
each a real `tools/call` on /mcp (2026-07-28 JSON, API-token auth, RBAC, audit) queued to a real sandbox worker;
against raw Docker SDK calls for the same work, in the same run.

Usage: .venv/bin/python benchmarks/sandbox/bench_gateway.py [--n 30] [--pool 2] [--gap 0.5]

Uses the development database and Redis under var/ (migrates; creates a `bench-sandbox` role and service account)
and the Docker Engine (scripts/provision.d/30-sandbox.sh), with SANDBOX_SCOPE=bench. `--gap` spaces creates like
arriving requests so the worker's refill (0.3 s after a claim) keeps the warm pool full.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpplat.settings.base")
os.environ["SANDBOX_SCOPE"] = "bench"

import django  # noqa: E402

django.setup()

import logging  # noqa: E402

import docker  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from apps.runs.tests.processes import Gateway  # noqa: E402
from apps.sandbox import runtime, services  # noqa: E402
from apps.sandbox.models import Sandbox, SandboxState  # noqa: E402
from benchmarks.harness import pct, service_token, tools_call  # noqa: E402

logging.getLogger("httpx").setLevel(logging.WARNING)
CODE = "print(1)"


def show(name: str, values: list[float]) -> str:
    p50, p95, mean = pct(values, 0.5), pct(values, 0.95), statistics.mean(values)
    line = f"| {name} | {len(values)} | {p50:.1f} | {p95:.1f} | {mean:.1f} |"
    print(line, flush=True)
    return line


def call(client: httpx.Client, tool: str, arguments: dict, i: int) -> dict:
    body, headers = tools_call(tool, arguments, i)
    response = client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 200, response.text[:300]
    if response.headers["content-type"].startswith("text/event-stream"):  # progress came first: the last message
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        message = next(m for m in map(json.loads, reversed(data)) if m.get("id") == i)
    else:
        message = response.json()
    result = message["result"]
    assert result.get("isError") is False, json.dumps(result)[:400]
    return result["structuredContent"]


def pooled() -> int:
    return Sandbox.objects.filter(state=SandboxState.POOLED).count()


def wait_pool(size: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while pooled() < size and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--pool", type=int, default=2)
    parser.add_argument("--gap", type=float, default=0.5)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    bearer = service_token("bench-sandbox", "sandbox.*")
    services.sandbox_reap(refill_pool=False)  # start clean
    settings.SANDBOX_POOL_SIZE = args.pool
    services.pool_refill()
    env = {**os.environ, "SANDBOX_POOL_SIZE": str(args.pool), "MCP_RATE_LIMIT_TOOL": "1000000/60"}
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "8", "--queues", "sandbox"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = Gateway(env)
    headers = {"authorization": f"Bearer {bearer}", "accept": "application/json, text/event-stream"}
    rows = ["| measurement | n | p50 ms | p95 ms | mean ms |", "|---|---|---|---|---|"]
    api = docker.APIClient(base_url=settings.DOCKER_HOST, version="auto")
    try:
        gateway.start()
        with httpx.Client(base_url=gateway.base, headers=headers, timeout=60) as client:
            for i in range(5):  # warm-up: worker, pools, token cache
                wait_pool(args.pool)
                sid = call(client, "sandbox.create", {}, i)["sandbox_id"]
                call(client, "sandbox.exec", {"sandbox_id": sid, "code": CODE}, i)
                call(client, "sandbox.destroy", {"sandbox_id": sid}, i)

            # 1. create (claims a warm container) → first exec result, two tools/call round trips
            first, empty = [], 0
            for i in range(args.n):
                wait_pool(args.pool)
                time.sleep(args.gap)
                empty += pooled() == 0
                started = time.perf_counter()
                sid = call(client, "sandbox.create", {}, i)["sandbox_id"]
                out = call(client, "sandbox.exec", {"sandbox_id": sid, "code": CODE}, i)
                first.append((time.perf_counter() - started) * 1000)
                assert out["stdout"] == "1\n", out
                call(client, "sandbox.destroy", {"sandbox_id": sid}, i)
            rows.append(show("gateway: sandbox.create (warm pool) → first sandbox.exec result", first))
            print(f"# {empty} of {args.n} creates found the pool empty", flush=True)

            # 2. warm exec round trip on one sandbox
            sid = call(client, "sandbox.create", {}, 0)["sandbox_id"]
            warm = []
            for i in range(args.n):
                started = time.perf_counter()
                call(client, "sandbox.exec", {"sandbox_id": sid, "code": CODE}, i)
                warm.append((time.perf_counter() - started) * 1000)
            call(client, "sandbox.destroy", {"sandbox_id": sid}, 0)
            rows.append(show("gateway: warm sandbox.exec round trip", warm))

        # 3. raw Docker SDK, same image and hardening as a pooled container, no database, no HTTP, no queue
        spec = runtime.ContainerSpec(
            sandbox_id="bench-raw",
            image=settings.SANDBOX_DEFAULT_IMAGE,
            owner="bench",
            expires_epoch=int(time.time()) + 600,
            runtime=settings.SANDBOX_RUNTIME,
            **settings.SANDBOX_DEFAULT_LIMITS,
        )
        raw_first, raw_cold, raw_warm = [], [], []
        for _ in range(args.n):
            cid = runtime.container_start(spec)  # pre-started, like a pooled one
            started = time.perf_counter()
            exec_id = api.exec_create(cid, ["python3", "-c", CODE], user=runtime.EXEC_USER)["Id"]
            out = api.exec_start(exec_id)
            api.exec_inspect(exec_id)
            raw_first.append((time.perf_counter() - started) * 1000)
            assert out == b"1\n", out
            runtime.container_remove(cid)
        rows.append(show("raw SDK: exec in a pre-started container (pool equivalent)", raw_first))
        for _ in range(args.n):
            started = time.perf_counter()
            cid = runtime.container_start(spec)
            exec_id = api.exec_create(cid, ["python3", "-c", CODE], user=runtime.EXEC_USER)["Id"]
            api.exec_start(exec_id)
            raw_cold.append((time.perf_counter() - started) * 1000)
            runtime.container_remove(cid)
        rows.append(show("raw SDK: create + start + exec (cold)", raw_cold))
        cid = runtime.container_start(spec)
        for _ in range(args.n):
            started = time.perf_counter()
            exec_id = api.exec_create(cid, ["python3", "-c", CODE], user=runtime.EXEC_USER)["Id"]
            api.exec_start(exec_id)
            api.exec_inspect(exec_id)
            raw_warm.append((time.perf_counter() - started) * 1000)
        runtime.container_remove(cid)
        rows.append(show("raw SDK: warm exec_create + exec_start + exec_inspect", raw_warm))
    finally:
        gateway.kill(signal.SIGTERM)
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        settings.SANDBOX_POOL_SIZE = 0
        services.sandbox_reap(refill_pool=False)
        for row in Sandbox.objects.filter(state=SandboxState.POOLED):
            services.sandbox_destroy_row(row, reason="bench over")
    print("\n".join(rows))
    print(
        f"# runtime={settings.SANDBOX_RUNTIME} pool={args.pool} gap={args.gap}s n={args.n} "
        f"load average {os.getloadavg()[0]:.2f} (2 cores)"
    )


if __name__ == "__main__":
    main()
