from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.selectors import audit_chain_verify, audit_digest_verify


class Command(BaseCommand):
    help = "Recompute the audit hash chain and check the signed digests; exit 1 at the first broken link."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from",
            dest="start",
            type=int,
            default=None,
            metavar="SEQ",
            help="start at event SEQ (linked to SEQ-1) instead of the first event",
        )
        parser.add_argument("--no-digests", action="store_true", help="skip checking the signed digests")

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_chain_verify(start=options["start"])
        if not report.ok:
            raise CommandError(report.summary(), returncode=1)
        self.stdout.write(report.summary())
        if options["no_digests"]:
            return
        digests = audit_digest_verify()
        if not digests.ok:
            raise CommandError(f"audit digests BROKEN: {digests.problem}", returncode=1)
        self.stdout.write(f"audit digests ok: {digests.checked} signed digests match the chain")
