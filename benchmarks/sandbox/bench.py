"""Sandbox latency: create → first exec result, and warm exec round trip; ours vs raw Docker SDK calls, one run.

Usage: .venv/bin/python benchmarks/sandbox/bench.py [--n 30] [--pool 3] [--gap 0.4]
Runs on the development settings (embedded PostgreSQL under var/, migrated first) with SANDBOX_SCOPE=bench, at the
SERVICE level (apps.sandbox.services — what the sandbox worker runs for sandbox.create / sandbox.exec); the gateway
and jobs runtime are not on main yet, so their hop is not included. `--gap` spaces creates like arriving requests so
the background refill can keep up (a burst faster than one refill per ~0.25 s drains the pool to cold starts).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpplat.settings.base")
os.environ["SANDBOX_SCOPE"] = "bench"

import django

django.setup()

import docker  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from apps.accounts.principal import Principal  # noqa: E402
from apps.sandbox import runtime, services  # noqa: E402
from apps.sandbox.models import Sandbox, SandboxState  # noqa: E402

CODE = "print(1)"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def show(name: str, values: list[float]) -> str:
    p50, p95, mean = pct(values, 0.5), pct(values, 0.95), statistics.mean(values)
    line = f"| {name} | {len(values)} | {p50:.1f} | {p95:.1f} | {mean:.1f} |"
    print(line, flush=True)
    return line


def wait_pool(size: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Sandbox.objects.filter(state=SandboxState.POOLED).count() < size and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--pool", type=int, default=3)
    parser.add_argument("--gap", type=float, default=0.4)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    principal = Principal(
        id="bench:sandbox", kind="test", name="bench", identity_source="internal", roles=frozenset({"admin"})
    )
    api = docker.APIClient(base_url=settings.DOCKER_HOST, version="auto")
    image = settings.SANDBOX_DEFAULT_IMAGE
    services.sandbox_reap(refill_pool=False)  # start clean
    rows = ["| measurement | n | p50 ms | p95 ms | mean ms |", "|---|---|---|---|---|"]

    # 1. ours, warm pool: sandbox_create (claims a pooled container) → sandbox_exec result
    settings.SANDBOX_POOL_SIZE = args.pool
    services.pool_refill()
    warm_create, cold_path = [], 0
    for _ in range(args.n):
        wait_pool(args.pool)
        time.sleep(args.gap)
        started = time.perf_counter()
        sandbox = services.sandbox_create(principal=principal)
        result = services.sandbox_exec(principal=principal, sandbox_id=str(sandbox.id), code=CODE)
        warm_create.append((time.perf_counter() - started) * 1000)
        assert result.stdout == b"1\n", result
        cold_path += sandbox.assigned_at is None or sandbox.assigned_at - sandbox.created_at < timedelta(seconds=0.2)
        services.sandbox_destroy(principal=principal, sandbox_id=str(sandbox.id))
    rows.append(show("ours: create (warm pool) → first exec result", warm_create))
    print(f"# {cold_path} of {args.n} creates found the pool empty and started cold", flush=True)

    # 2. ours, warm exec round trip on one sandbox
    sandbox = services.sandbox_create(principal=principal)
    warm_exec = []
    for _ in range(args.n):
        started = time.perf_counter()
        result = services.sandbox_exec(principal=principal, sandbox_id=str(sandbox.id), code=CODE)
        warm_exec.append((time.perf_counter() - started) * 1000)
    services.sandbox_destroy(principal=principal, sandbox_id=str(sandbox.id))
    rows.append(show("ours: warm exec round trip", warm_exec))

    # 3. ours, cold (pool disabled): create + start hardened container → first exec result
    settings.SANDBOX_POOL_SIZE = 0
    for row in Sandbox.objects.filter(state=SandboxState.POOLED):
        services.sandbox_destroy_row(row, reason="bench")
    cold = []
    for _ in range(args.n):
        started = time.perf_counter()
        sandbox = services.sandbox_create(principal=principal)
        services.sandbox_exec(principal=principal, sandbox_id=str(sandbox.id), code=CODE)
        cold.append((time.perf_counter() - started) * 1000)
        services.sandbox_destroy(principal=principal, sandbox_id=str(sandbox.id))
    rows.append(show("ours: cold create (no pool) → first exec result", cold))

    # 4. raw Docker SDK, same image and hardening, no database: create + start + exec_run
    raw_cold, raw_exec = [], []
    host_config = api.create_host_config(
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        init=True,
        mem_limit="256m",
        pids_limit=128,
        tmpfs={"/workspace": "size=64m,uid=10001,gid=10001"},
    )
    for _ in range(args.n):
        started = time.perf_counter()
        cid = api.create_container(image, command=["sleep", "infinity"], user="10000:10000", host_config=host_config)[
            "Id"
        ]
        api.start(cid)
        exec_id = api.exec_create(cid, ["python3", "-c", CODE], user="10001:10001")["Id"]
        out = api.exec_start(exec_id)
        raw_cold.append((time.perf_counter() - started) * 1000)
        assert out == b"1\n"
        api.remove_container(cid, force=True)
    rows.append(show("raw SDK: create + start + exec_run (cold)", raw_cold))
    cid = api.create_container(image, command=["sleep", "infinity"], user="10000:10000", host_config=host_config)["Id"]
    api.start(cid)
    for _ in range(args.n):
        started = time.perf_counter()
        exec_id = api.exec_create(cid, ["python3", "-c", CODE], user="10001:10001")["Id"]
        api.exec_start(exec_id)
        api.exec_inspect(exec_id)
        raw_exec.append((time.perf_counter() - started) * 1000)
    api.remove_container(cid, force=True)
    rows.append(show("raw SDK: warm exec_create + exec_start + exec_inspect", raw_exec))
    services.sandbox_reap(refill_pool=False)
    print("\n".join(rows))
    print(f"# runtime={settings.SANDBOX_RUNTIME} pool={args.pool} gap={args.gap}s n={args.n} image={image}")
    assert runtime.containers_labelled() == []


if __name__ == "__main__":
    main()
