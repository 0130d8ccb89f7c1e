"""20 agents claim at once: each gets a distinct task or a clear "nothing ready" answer.

Service level, with real threads and real PostgreSQL connections (transactional_db: every thread sees committed
rows). The same check through the real gateway is apps/tasks/tests/test_gateway.py.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from apps.tasks import services
from apps.tasks.models import Status, Task
from apps.tasks.tests.conftest import make_principal


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_claims_get_distinct_tasks():
    # given 15 ready tasks (and 5 that wait on the first), open to every agent
    owner = make_principal("conc-owner")
    project = services.project_create(principal=owner, key="swarm")
    services.project_grant(principal=owner, project=project, subject="role:agent", access="write")
    ready = [services.task_create(principal=owner, project="swarm", title=f"r{i}").pk for i in range(15)]
    for i in range(5):
        services.task_create(principal=owner, project="swarm", title=f"w{i}", depends_on=[ready[0]])
    agents = [make_principal(f"swarm-{i}") for i in range(20)]
    barrier = threading.Barrier(20)
    results: dict[str, tuple[int | None, str]] = {}
    errors: list[BaseException] = []

    def claim(agent) -> None:
        try:
            barrier.wait()
            outcome = services.task_next_action(principal=agent, project="swarm", claim=True)
            results[agent.id] = (outcome.claimed.pk if outcome.claimed else None, outcome.message)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    # when all 20 claim at the same moment
    threads = [threading.Thread(target=claim, args=(agent,)) for agent in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # then 15 distinct ready tasks were claimed and 5 agents were told nothing is ready
    assert errors == []
    claimed = [task for task, _ in results.values() if task is not None]
    assert sorted(claimed) == sorted(ready)
    nothing = [message for task, message in results.values() if task is None]
    assert len(nothing) == 5
    assert all(m.startswith("nothing ready: ") and "todo task(s)" in m for m in nothing), nothing
    rows = Task.objects.filter(pk__in=ready)
    assert {(t.status, t.assignee) for t in rows} == {
        (Status.IN_PROGRESS, a) for a, (task, _) in results.items() if task
    }
