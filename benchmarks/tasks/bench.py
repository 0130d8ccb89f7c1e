"""task.next_action and task.dep_graph on 10,000 tasks and 30,000 edges: p50/p95 latency.

Runs the MCP tool handlers from the registry (what the gateway calls after auth/validation) against a private
database `bench_tasks` on the configured PostgreSQL (the embedded one by default). Usage:

    .venv/bin/python benchmarks/tasks/bench.py [--tasks 10000] [--edges-per-task 3] [--runs 300] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpplat.settings.test")
DB_NAME = "bench_tasks"


def setup_django(keep: bool) -> None:
    import django
    from django.conf import settings

    settings.DATABASES["default"]["NAME"] = DB_NAME
    import psycopg

    params = settings.DATABASES["default"]
    admin = psycopg.connect(
        host=params["HOST"], port=params["PORT"], user=params["USER"], dbname="postgres", autocommit=True
    )
    exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone()
    if exists and not keep:
        admin.execute(f'DROP DATABASE "{DB_NAME}"')
        exists = None
    if not exists:
        admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    admin.close()
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(n_tasks: int, edges_per_task: int, rng: random.Random) -> tuple[str, list[int]]:
    from apps.tasks.models import Dependency, Project, Status, Task

    project, created = Project.objects.get_or_create(key="bench", defaults={"name": "bench", "owner": "service:bench"})
    if not created and Task.objects.filter(project=project).count() == n_tasks:
        return project.key, list(
            Task.objects.filter(project=project, parent=None, status="todo").values_list("id", flat=True)[:50]
        )
    Task.objects.filter(project=project).delete()
    done_until, started_until = int(n_tasks * 0.5), int(n_tasks * 0.7)
    epochs = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = []
    for i in range(n_tasks):
        # a moving frontier: old work mostly done, a mixed middle, new work mostly todo
        if i < done_until:
            status = Status.DONE if rng.random() < 0.95 else Status.CANCELLED
        elif i < started_until:
            status = rng.choices([Status.DONE, Status.IN_PROGRESS, Status.TODO], [0.6, 0.1, 0.3])[0]
        else:
            status = rng.choices(
                [Status.TODO, Status.BLOCKED, Status.DEFERRED, Status.IN_PROGRESS], [0.85, 0.05, 0.05, 0.05]
            )[0]
        rows.append(
            Task(
                project=project,
                title=f"task {i}",
                status=status,
                priority=rng.randint(1, 4),
                due_date=(epochs + dt.timedelta(days=rng.randint(0, 365))).date() if rng.random() < 0.3 else None,
                assignee="service:worker" if status == Status.IN_PROGRESS else "",
            )
        )
    tasks = Task.objects.bulk_create(rows, batch_size=2000)
    ids = [t.pk for t in tasks]
    # epics: 200 todo tasks among the open ones; 30 % of later open tasks become their subtasks
    open_ids = ids[started_until:]
    epics = open_ids[:200]
    updates = []
    for index in range(started_until + 200, n_tasks):
        if rng.random() < 0.3:
            tasks[index].parent_id = rng.choice(epics)
            updates.append(tasks[index])
    Task.objects.bulk_update(updates, ["parent"], batch_size=2000)
    edges = set()
    for index in range(1, n_tasks):
        window = range(max(0, index - 300), index)  # dependencies point to earlier tasks: acyclic
        for dep in rng.sample(window, min(edges_per_task, len(window))):
            edges.add((ids[index], ids[dep]))
    Dependency.objects.bulk_create([Dependency(task_id=a, depends_on_id=b) for a, b in edges], batch_size=5000)
    from django.db import connection

    from apps.tasks.services import task_counters_refresh

    task_counters_refresh(project_id=project.pk)  # bulk rows bypass the services that keep the counters
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tasks_task; ANALYZE tasks_dependency")
    return project.key, epics


def measure(label: str, call, runs: int) -> dict[str, float]:
    for _ in range(min(10, runs)):
        call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    result = {
        "p50": statistics.median(samples),
        "p95": samples[int(len(samples) * 0.95) - 1],
        "max": samples[-1],
        "runs": runs,
    }
    print(
        f"{label:<44} p50 {result['p50']:7.2f} ms   p95 {result['p95']:7.2f} ms   max {result['max']:7.2f} ms", end=""
    )
    print(f"   n={runs}")
    return result


def server_side(key: str) -> None:
    """The ready query's own cost inside PostgreSQL (planning + execution), less sensitive to machine load."""
    import json

    from django.db import connection

    from apps.tasks.models import Project
    from apps.tasks.selectors import READY_SQL

    params = {"projects": [Project.objects.get(key=key).pk], "me": "service:bench", "limit": 5}
    planning, execution = [], []
    with connection.cursor() as cursor:
        for _ in range(50):
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + READY_SQL, params)
            plan = cursor.fetchone()[0]
            plan = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
            planning.append(plan["Planning Time"])
            execution.append(plan["Execution Time"])
    print(
        f"ready query inside PostgreSQL: planning p50 {statistics.median(planning):.2f} ms, "
        f"execution p50 {statistics.median(execution):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--edges-per-task", type=int, default=3)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="reuse the seeded database of an earlier run")
    options = parser.parse_args()
    setup_django(options.keep)
    from django.db import transaction

    from apps.accounts.principal import Principal
    from apps.gateway.registry import ToolContext, registry
    from apps.tasks.models import Dependency, Task

    rng = random.Random(42)
    started = time.perf_counter()
    key, epics = seed(options.tasks, options.edges_per_task, rng)
    print(
        f"seeded {Task.objects.count()} tasks, {Dependency.objects.count()} edges in "
        f"{time.perf_counter() - started:.1f} s"
    )
    registry.autodiscover()
    ctx = ToolContext()
    ctx.principal = Principal(
        id="service:bench",
        kind="service",
        name="bench",
        identity_source="internal",
        roles=frozenset({"agent"}),
        grants=frozenset({"task.*"}),
    )

    def tool(name: str, args: dict) -> dict:
        return registry.get(name).handler(ctx, args)  # type: ignore[union-attr,return-value]

    sample = tool("task.next_action", {"project": key, "limit": 5})
    first = sample["ready"][0]["reason"] if sample["ready"] else sample["message"]
    print(f"ready now: {len(sample['ready'])} shown; first reason: {first}")

    def claim_and_roll_back() -> None:
        with transaction.atomic():
            out = tool("task.next_action", {"project": key, "claim": True})
            assert out["claimed"] is not None, out["message"]
            transaction.set_rollback(True)  # keep the ready set identical between runs

    runs = options.runs
    one, five, fifteen = os.getloadavg()
    print(f"load average before: {one:.2f} {five:.2f} {fifteen:.2f} (2 cores)")
    server_side(key)
    measure("task.next_action limit=5", lambda: tool("task.next_action", {"project": key, "limit": 5}), runs)
    measure("task.next_action claim=true (rolled back)", claim_and_roll_back, runs)
    measure("task.next_action all projects, limit=20", lambda: tool("task.next_action", {"limit": 20}), runs)
    measure(
        "task.dep_graph project (10k nodes, JSON)",
        lambda: tool("task.dep_graph", {"project": key}),
        max(20, runs // 10),
    )
    measure(
        "task.dep_graph project + mermaid + dot",
        lambda: tool("task.dep_graph", {"project": key, "format": ["mermaid", "dot"]}),
        max(20, runs // 10),
    )
    measure(
        "task.dep_graph subtree (an epic)",
        lambda: tool("task.dep_graph", {"root": rng.choice(epics)}),
        max(20, runs // 10),
    )


if __name__ == "__main__":
    main()
