"""task.next_action and task.dep_graph through the real gateway: daphne serving /mcp, an API token of an agent,
RBAC, validation, rate limits and audit on every call. Uses the data set of bench.py (run that first).

    .venv/bin/python benchmarks/tasks/bench.py --runs 50          # seeds bench_tasks
    .venv/bin/python benchmarks/tasks/bench_gateway.py [--runs 300]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from bench import measure  # the same percentile report as the handler-level run

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpplat.settings.test")
os.environ["MCPPLAT_TEST_WORKER_DB"] = "bench_tasks"  # the test settings point the database here
os.environ.setdefault("MCP_RATE_LIMIT_TOOL", "1000000/60")  # measure latency, not the rate limiter


def agent_token() -> tuple[str, int]:
    import django

    django.setup()
    try:
        import apps.gateway.transport  # noqa: F401
    except ImportError:
        sys.exit("the gateway (/mcp transport) is not on this branch: use bench.py (tool-handler level)")
    from apps.accounts import services as accounts
    from apps.tasks.models import Project, ProjectGrant, Task

    accounts.role_catalog_seed()
    project = Project.objects.get(key="bench")
    ProjectGrant.objects.update_or_create(project=project, subject="role:agent", defaults={"access": "write"})
    account = accounts.service_account_ensure(name="bench-agent", roles=["agent"])
    epic = Task.objects.filter(project=project, subtasks__isnull=False).values_list("id", flat=True).first()
    return accounts.api_token_create(name="bench", service_account=account).value, epic


def call(client: httpx.Client, url: str, token: str, name: str, arguments: dict) -> dict:
    from apps.tasks.tests.mcp_call import tool_result, tools_call

    result = tool_result(client.post(url, **tools_call(name, arguments, token)))
    if result.get("isError"):
        raise RuntimeError(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    options = parser.parse_args()
    token, epic = agent_token()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from tests.e2e.conftest import free_port

    port = free_port()
    env = {**os.environ, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mcpplat.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("daphne did not start")
            time.sleep(0.2)
        one, five, fifteen = os.getloadavg()
        print(f"through the gateway (daphne, API token, 2026-07-28 stateless); load {one:.2f} {five:.2f} {fifteen:.2f}")
        with httpx.Client(timeout=30) as client:
            runs = options.runs
            measure(  # the gateway's own cost per call: auth, RBAC, rate limit, audit, a trivial tool
                "gateway platform.whoami (baseline)",
                lambda: call(client, url, token, "platform.whoami", {}),
                runs,
            )
            measure(
                "gateway task.next_action limit=5",
                lambda: call(client, url, token, "task.next_action", {"project": "bench", "limit": 5}),
                runs,
            )
            measure(
                "gateway task.dep_graph subtree (an epic)",
                lambda: call(client, url, token, "task.dep_graph", {"root": epic}),
                max(20, runs // 5),
            )
            measure(
                "gateway task.dep_graph project (10k nodes)",
                lambda: call(client, url, token, "task.dep_graph", {"project": "bench"}),
                max(10, runs // 20),
            )
    finally:
        os.killpg(server.pid, 15)
        server.wait(10)


if __name__ == "__main__":
    main()
