from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.selectors import audit_digest_verify
from apps.audit.services import audit_digest_create


class Command(BaseCommand):
    help = "Sign the current head of the audit chain (HMAC with AUDIT_SIGNING_KEY), or --verify every digest."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--verify", action="store_true", help="check every stored digest instead of creating one")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["verify"]:
            report = audit_digest_verify()
            if not report.ok:
                raise CommandError(f"audit digests BROKEN: {report.problem}", returncode=1)
            self.stdout.write(f"audit digests ok: {report.checked} checked")
            return
        digest = audit_digest_create()
        if digest is None:
            self.stdout.write("no audit events yet: nothing to sign")
            return
        self.stdout.write(f"signed audit head #{digest.sequence} {digest.head_hash} (key {digest.key_id})")
