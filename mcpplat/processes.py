"""What `make run` supervises: the gateway and one Dramatiq worker pool per queue.

Kept apart from the supervisor so capability work can add a process (the scheduler, say) in one place.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

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


@dataclass
class RestartPolicy:
    """When the supervisor restarts a child that exited, and when it gives up (docs/reliability.md, "Supervision").

    The delay doubles from `initial_s` with each exit in a row, capped at `max_s`; a child that stayed up
    `stable_after_s` starts again from `initial_s`. `max_failures` exits within `window_s` mean restarting does not
    help: the supervisor stops the platform and names the child. Times are passed in, so the policy is a pure function
    of the exits it saw.
    """

    initial_s: float = 0.5
    max_s: float = 15.0
    stable_after_s: float = 30.0
    max_failures: int = 5
    window_s: float = 60.0
    _exits: list[float] = field(default_factory=list)
    _in_a_row: int = 0

    def after_exit(self, *, now: float, uptime_s: float) -> float | None:
        """Record an exit at `now` of a child that ran `uptime_s`: the delay before restarting it, or None (give up)."""
        self._in_a_row = 1 if uptime_s >= self.stable_after_s else self._in_a_row + 1
        self._exits = [t for t in self._exits if now - t < self.window_s] + [now]
        if len(self._exits) >= self.max_failures:
            return None
        return float(min(self.initial_s * 2 ** (self._in_a_row - 1), self.max_s))

    @property
    def recent_failures(self) -> int:
        return len(self._exits)
