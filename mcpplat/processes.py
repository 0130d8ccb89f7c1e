"""What `make run` supervises: the gateway and one Dramatiq worker pool per queue.

Kept apart from the supervisor so capability work can add a process (the scheduler, say) in one place.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Process:
    name: str
    argv: list[str]


def platform_processes(*, bind: str, port: int) -> list[Process]:
    python = sys.executable
    manage = str(settings.BASE_DIR / "manage.py")
    processes = [
        Process(
            "gateway",
            [
                python,
                "-m",
                "daphne",
                "-b",
                bind,
                "-p",
                str(port),
                "--no-server-name",
                "--access-log",
                "-",
                "mcpplat.asgi:application",
            ],
        ),
    ]
    for queue in settings.DRAMATIQ_QUEUES:
        processes.append(
            Process(
                f"worker.{queue}",
                [
                    python,
                    manage,
                    "rundramatiq",
                    "--processes",
                    "1",
                    "--threads",
                    "4",
                    "--queues",
                    queue,
                    "--worker-shutdown-timeout",
                    "10000",
                ],
            )
        )
    # The one scheduler (apps/runs/scheduler.py): sends periodic maintenance actors; standby if another leads.
    processes.append(Process("scheduler", [python, manage, "run_scheduler"]))
    return processes
