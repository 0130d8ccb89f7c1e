from __future__ import annotations

import json
import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from mcpplat import embedded


class Command(BaseCommand):
    help = "Status, start or stop of the embedded PostgreSQL and Redis under var/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["status", "start", "stop"])

    def handle(self, *args: object, **options: object) -> None:
        p = settings.VAR_PATHS
        if options["action"] == "stop":
            embedded.stop(p)
        elif options["action"] == "start":
            # Started without an owner: they keep running until `manage.py embedded stop`.
            os.environ[embedded.CHILD_ENV] = "1"
            embedded.ensure_started(p, postgres=True, redis=True)
        self.stdout.write(json.dumps(embedded.status(p), indent=2))
