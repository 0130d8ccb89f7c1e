from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.sandbox import runtime

BUILD = Path(__file__).resolve().parents[2] / "image" / "build.sh"


class Command(BaseCommand):
    help = "Build the default sandbox image offline (debootstrap + docker import), unless it exists (--force)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--force", action="store_true", help="Rebuild even when the image exists.")

    def handle(self, *args: Any, force: bool, **options: Any) -> None:
        image = settings.SANDBOX_DEFAULT_IMAGE
        try:
            present = runtime.image_present(image)
        except runtime.EngineUnavailable as exc:
            raise CommandError(str(exc)) from None
        if present and not force:
            self.stdout.write(f"{image} is present (use --force to rebuild)")
            return
        if subprocess.run([str(BUILD), image], check=False).returncode != 0:  # noqa: S603 - our own script
            raise CommandError(f"building {image} failed (see the messages above)")
