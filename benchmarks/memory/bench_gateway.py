"""memory.search through the gateway: a real daphne, a real API token, JSON-RPC over HTTP (2026-07-28 wire).

    .venv/bin/python benchmarks/memory/bench_gateway.py --queries 200     # after bench_100k.py

Serves the `bench_memory_100k` database (100,000 memories) with daphne on a free loopback port, gives an admin
service account a read grant on namespace `bench`, and calls `memory.search` (hybrid, top_k=10) sequentially with
httpx, one distinct question per call. The first call of the gateway process starts the model load and is
answered from text (`degraded`); the script waits until answers are hybrid, then measures.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from _setup import django_on  # noqa: E402
from bench_100k import pct, queries  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    django_on("bench_memory_100k")
    import httpx

    from apps.accounts import services
    from apps.memory.models import MemoryNamespaceGrant

    services.role_catalog_seed()
    account = services.service_account_ensure(name="memory-bench", roles=["admin"])
    token = services.api_token_create(name="memory bench", service_account=account).value
    MemoryNamespaceGrant.objects.get_or_create(namespace="bench", principal_id=f"service:{account.pk}", role="")

    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mcpplat.settings.test",
        "MCPPLAT_TEST_WORKER_DB": "bench_memory_100k",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mcpplat.asgi:application"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "memory.search",
    }
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}

    def search(client: httpx.Client, request_id: int, text: str) -> dict:
        body = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {
                "name": "memory.search",
                "arguments": {"query": text, "namespace": "bench", "top_k": 10},
                "_meta": meta,
            },
        }
        response = client.post(url, json=body, headers=headers, timeout=30)
        response.raise_for_status()
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            # The gateway streams a call that outlasts MCP_SSE_AFTER_MS: the answer is the `data:` with the result.
            for line in response.text.splitlines():
                if line.startswith("data:") and '"result"' in line:
                    return json.loads(line[5:])["result"]
            raise SystemExit(f"no result in the stream: {response.text[:500]}")
        return response.json()["result"]

    try:
        with httpx.Client() as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("daphne did not start")
                time.sleep(0.2)
            first = search(client, 0, "warm-up question about the billing service")
            print("first call:", first["structuredContent"]["mode"], first["structuredContent"]["degraded"])
            while search(client, 0, "warm-up again")["structuredContent"]["mode"] != "hybrid":
                time.sleep(1)
            for i, text in enumerate(queries(10, seed=99)):
                search(client, i + 1, text)
            latencies = []
            for i, text in enumerate(queries(args.queries, seed=41)):
                started = time.perf_counter()
                result = search(client, 100 + i, text)
                latencies.append((time.perf_counter() - started) * 1000)
                content = result["structuredContent"]
                if result.get("isError") or content["mode"] != "hybrid" or len(content["hits"]) != 10:
                    raise SystemExit(f"unexpected answer: {json.dumps(result)[:500]}")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(15)
    print(
        json.dumps(
            {
                "queries": args.queries,
                "gateway_memory_search_ms": {"p50": pct(latencies, 50), "p95": pct(latencies, 95)},
                "load": os.getloadavg(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
