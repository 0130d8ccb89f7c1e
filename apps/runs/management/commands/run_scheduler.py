"""`manage.py run_scheduler`: the one scheduler process (see apps/runs/scheduler.py)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from apps.runs.scheduler import load_schedule, run_forever


class Command(BaseCommand):
    help = "Send periodic maintenance actors (run lease expiry, stale-job recovery, …) to their queues."

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        schedule = load_schedule()
        listed = ", ".join(f"{p.name} every {p.every_s:g} s" for p in schedule.values())
        self.stdout.write(f"scheduler: {len(schedule)} periodic actor(s): {listed}", ending="\n")
        self.stdout.flush()
        run_forever(stop)
