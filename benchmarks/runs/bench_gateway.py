"""Queued vs inline no-op tool through the real gateway: daphne + /mcp (2026-07-28 JSON), API-token auth, audit,
one `rundramatiq` worker. Run from the project root:

    .venv/bin/python benchmarks/runs/bench_gateway.py [--n 300] [--concurrency 16]

Uses the development database and Redis under var/ (migrates; creates a `bench-runs` role and service account).
"""

from __future__ import annotations

import argparse
import asyncio
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
os.environ.setdefault("RUNS_EXTRA_TOOL_MODULES", "apps.runs.tests.tools_fixture")
os.environ.setdefault("MCP_RATE_LIMIT_TOOL", "1000000/60")  # measure latency, not the rate limiter

import django  # noqa: E402

django.setup()

import logging  # noqa: E402

from django.core.management import call_command  # noqa: E402

from apps.runs.tests.processes import Gateway  # noqa: E402
from benchmarks import harness  # noqa: E402

logging.getLogger("httpx").setLevel(logging.WARNING)


def pct(values: list[float], p: float) -> float:
    return harness.pct(values, p / 100)


def token() -> str:
    return harness.service_token("bench-runs", "test.*")


def request(tool: str, i: int) -> tuple[dict, dict]:
    return harness.tools_call(tool, {"i": i}, i)


def check(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text[:300]
    assert '"isError":false' in response.text.replace(" ", ""), response.text[:300]


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def concurrent(base: httpx.AsyncClient, tool: str, n: int, concurrency: int) -> tuple[list[float], float]:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> float:
        async with sem:
            body, headers = request(tool, i)
            t0 = time.perf_counter()
            check(await base.post("/mcp", json=body, headers=headers))
            return (time.perf_counter() - t0) * 1000

    t0 = time.perf_counter()
    latencies = await asyncio.gather(*(one(i) for i in range(n)))
    return list(latencies), n / (time.perf_counter() - t0)


def main(n: int, concurrency: int) -> None:
    call_command("migrate", verbosity=0)
    bearer = token()
    env = os.environ.copy()
    worker = start(
        [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "8", "--queues", "default"], env
    )
    gateway = Gateway(env)
    headers = {"authorization": f"Bearer {bearer}", "accept": "application/json, text/event-stream"}
    try:
        gateway.start()
        base = gateway.base
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            for i in range(40):  # warm-up: pools, worker, token cache
                for tool in ("test.noop", "test.noop_inline"):
                    body, h = request(tool, i)
                    check(client.post("/mcp", json=body, headers=h))
            samples: dict[str, list[float]] = {"test.noop_inline": [], "test.noop": []}
            for i in range(n):  # interleaved, so both see the same background load
                for tool, latencies in samples.items():
                    body, h = request(tool, i)
                    t0 = time.perf_counter()
                    check(client.post("/mcp", json=body, headers=h))
                    latencies.append((time.perf_counter() - t0) * 1000)
        inline, queued = samples["test.noop_inline"], samples["test.noop"]
        print(f"load average: {os.getloadavg()[0]:.2f} (2 cores); sequential n={n} each, interleaved")
        print(f"  inline  p50 {statistics.median(inline):.2f} ms  p99 {pct(inline, 99):.2f} ms")
        print(f"  queued  p50 {statistics.median(queued):.2f} ms  p99 {pct(queued, 99):.2f} ms")
        print(
            f"  added   p50 {statistics.median(queued) - statistics.median(inline):.2f} ms  "
            f"p99 {pct(queued, 99) - pct(inline, 99):.2f} ms"
        )

        async def loaded() -> None:
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as aclient:
                for tool in ("test.noop_inline", "test.noop"):
                    lat, rate = await concurrent(aclient, tool, n, concurrency)
                    print(
                        f"  {concurrency} concurrent {tool}: p50 {statistics.median(lat):.1f} ms  "
                        f"p99 {pct(lat, 99):.1f} ms  {rate:.0f} calls/s"
                    )

        asyncio.run(loaded())
    finally:
        gateway.kill(signal.SIGTERM)
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    options = parser.parse_args()
    main(options.n, options.concurrency)
