"""Added latency of a queued tool call over the same tool run inline, and queued throughput.

Without the gateway: each sample is `services.job_submit` (commit + enqueue) → `streams.job_events` until the result
(the path the gateway takes for a queued `tools/call`), against one real `rundramatiq` worker on the Redis broker.
Run from the project root:  .venv/bin/python benchmarks/runs/bench_queued.py [--n 500] [--concurrency 16]
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpplat.settings.base")
os.environ.setdefault("RUNS_EXTRA_TOOL_MODULES", "apps.runs.tests.tools_fixture")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from apps.accounts.principal import Principal  # noqa: E402
from apps.gateway.registry import ToolContext, registry  # noqa: E402
from apps.runs import events, services, streams  # noqa: E402
from apps.runs.models import Job  # noqa: E402

WORKER_TIMEOUT = os.environ.get("dramatiq_worker_timeout")  # noqa: SIM112 (Dramatiq's own variable name)
PRINCIPAL = Principal(id="bench:1", kind="test", name="bench", identity_source="internal")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


SPANS: dict[str, list[float]] = {"submit": [], "queue wait": [], "execute": [], "result to reader": []}


async def queued_once(tool, spans: bool = False) -> float:
    start = time.perf_counter()
    job = await submit(tool=tool, arguments={"i": 1}, principal=PRINCIPAL)
    submitted = time.perf_counter()
    async for event in streams.job_events(str(job.pk)):
        if event.is_terminal:
            assert event.kind == "result", event.payload
            break
    end = time.perf_counter()
    if spans:  # where the time goes, from the job's own timestamps (same host clock)
        row = await load(job.pk)
        done_wall = time.time() - (time.perf_counter() - end)
        SPANS["submit"].append((submitted - start) * 1000)
        SPANS["queue wait"].append((row.started_at - row.created_at).total_seconds() * 1000)
        SPANS["execute"].append((row.finished_at - row.started_at).total_seconds() * 1000)
        SPANS["result to reader"].append((done_wall - row.finished_at.timestamp()) * 1000)
    return (end - start) * 1000


submit = events.db_call(services.job_submit)
load = events.db_call(lambda pk: Job.objects.get(pk=pk))


def inline_once(tool) -> float:
    ctx = ToolContext()
    ctx.principal = PRINCIPAL
    start = time.perf_counter()
    tool.handler(ctx, {"i": 1})
    return (time.perf_counter() - start) * 1000


async def main(n: int, concurrency: int) -> None:
    queued, inline = registry.get("test.noop"), registry.get("test.noop_inline")
    for _ in range(30):  # warm-up: worker connections, pools
        await queued_once(queued)
    inline_ms = [inline_once(inline) for _ in range(n)]
    queued_ms = [await queued_once(queued, spans=True) for _ in range(n)]
    added = statistics.median(queued_ms) - statistics.median(inline_ms)
    print(f"sequential, n={n}")
    print(f"  inline  p50 {statistics.median(inline_ms):.3f} ms  p99 {pct(inline_ms, 99):.3f} ms")
    print(f"  queued  p50 {statistics.median(queued_ms):.2f} ms  p99 {pct(queued_ms, 99):.2f} ms")
    print(f"  added   p50 {added:.2f} ms  p99 {pct(queued_ms, 99) - pct(inline_ms, 99):.2f} ms")
    print(f"  sequential throughput {n / (sum(queued_ms) / 1000):.0f} calls/s")
    print("  where the time goes (p50): " + ", ".join(f"{k} {statistics.median(v):.2f} ms" for k, v in SPANS.items()))
    sem = asyncio.Semaphore(concurrency)

    async def one() -> float:
        async with sem:
            return await queued_once(queued)

    start = time.perf_counter()
    loaded = await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - start
    print(f"concurrency {concurrency}, n={n}")
    print(f"  queued  p50 {statistics.median(loaded):.2f} ms  p99 {pct(loaded, 99):.2f} ms")
    print(f"  throughput {n / elapsed:.0f} calls/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threads", type=int, default=8, help="worker threads")
    options = parser.parse_args()
    call_command("migrate", verbosity=0)
    worker = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "rundramatiq",
            "--processes",
            "1",
            "--threads",
            str(options.threads),
            "--queues",
            "default",
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1)
        print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores)  dramatiq_worker_timeout={WORKER_TIMEOUT} ms")
        asyncio.run(main(options.n, options.concurrency))
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(20)
