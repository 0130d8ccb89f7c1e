from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.gateway.docs import ERRORS_MD, TOOLS_MD, errors_markdown, tools_markdown


class Command(BaseCommand):
    help = "Regenerate docs/tools.md (from the tool registry) and docs/errors.md (from the error catalog)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale instead of writing")

    def handle(self, *args: Any, check: bool = False, **options: Any) -> None:
        stale = []
        for path, text in ((TOOLS_MD, tools_markdown()), (ERRORS_MD, errors_markdown())):
            if path.exists() and path.read_text() == text:
                continue
            stale.append(str(path))
            if not check:
                path.write_text(text)
                self.stdout.write(f"wrote {path}")
        if check and stale:
            self.stderr.write(f"stale: {', '.join(stale)}; run `manage.py tools_doc`")
            raise SystemExit(1)
