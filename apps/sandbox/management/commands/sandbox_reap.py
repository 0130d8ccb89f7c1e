from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.sandbox import runtime, services


class Command(BaseCommand):
    help = "Destroy expired sandboxes and orphaned sandbox containers now (the scheduler runs this every 30 s)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--loop", type=float, default=0, help="Repeat every N seconds until interrupted.")
        parser.add_argument("--no-pool", action="store_true", help="Do not top up the warm pool.")

    def handle(self, *args: Any, loop: float, no_pool: bool, **options: Any) -> None:
        while True:
            try:
                report = services.sandbox_reap(refill_pool=not no_pool)
            except runtime.EngineUnavailable as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(json.dumps(report.as_dict()))
            if not loop:
                return
            time.sleep(loop)
