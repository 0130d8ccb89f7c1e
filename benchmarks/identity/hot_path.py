"""Hot-path costs the gateway pays per request: authenticate() on a warm cache, and durable audit_record().

Run: DJANGO_SETTINGS_MODULE=mcpplat.settings.test .venv/bin/python benchmarks/identity/hot_path.py
(uses the test database `test_mcpplat`, created by a previous `make test`; writes real audit rows there).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpplat.settings.test")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connections  # noqa: E402

settings.DATABASES["default"]["NAME"] = "test_mcpplat"
connections["default"].settings_dict["NAME"] = "test_mcpplat"

from apps.accounts.identity import authenticate  # noqa: E402
from apps.accounts.services import api_token_create, role_catalog_seed, service_account_ensure  # noqa: E402
from apps.audit.writer import AuditRecord, audit_record, audit_writer_close  # noqa: E402


def _token() -> str:
    role_catalog_seed()
    account = service_account_ensure(name="bench-identity", roles=["agent"])
    return api_token_create(name="bench", service_account=account).value


async def bench_authenticate(token: str, n: int = 200_000) -> None:
    headers = {"authorization": f"Bearer {token}"}
    await authenticate(headers, client_host="127.0.0.1")  # miss: database
    started = time.perf_counter()
    for _ in range(n):
        await authenticate(headers, client_host="127.0.0.1")
    elapsed = time.perf_counter() - started
    print(f"authenticate, warm cache: {n / elapsed:,.0f} calls/s ({elapsed / n * 1e6:.2f} µs/call)")


async def bench_audit(concurrency: int, seconds: float = 3.0) -> None:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await audit_record(
                AuditRecord(
                    principal_id="service:bench",
                    identity_source="api_token",
                    method="tools/call",
                    tool="task.list",
                    arguments={"k": k, "n": n},
                    outcome="ok",
                    latency_ms=1.0,
                )
            )
            latencies.append((time.perf_counter() - started) * 1000)
            n += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"audit_record, {concurrency:>3} concurrent callers: {len(latencies) / elapsed:,.0f} events/s, "
        f"p50 {statistics.median(latencies):.2f} ms, p99 {p99:.2f} ms"
    )


async def main() -> None:
    token = await asyncio.to_thread(_token)
    await bench_authenticate(token)
    for concurrency in (1, 16, 64):
        await bench_audit(concurrency)
    await audit_writer_close()


if __name__ == "__main__":
    asyncio.run(main())
