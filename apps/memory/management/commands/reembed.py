"""`manage.py reembed`: embed memories again after a model change (or retry failed ones), with a progress bar."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.memory import embeddings, services
from apps.memory.models import EmbeddingState, Memory


def _bar(done: int, total: int, started: float, width: int = 30) -> str:
    fraction = done / total if total else 1.0
    rate = done / max(time.monotonic() - started, 1e-6)
    filled = int(width * fraction)
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {fraction:6.1%} {rate:7.1f} items/s"


class Command(BaseCommand):
    help = (
        "Re-embed memories whose vectors come from another model than EMBEDDING_BACKEND/EMBEDDING_MODEL, or that "
        "are pending or failed (--all: every memory). Runs here, in batches, with a progress bar."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--all", action="store_true", help="re-embed every memory, not only stale ones")
        parser.add_argument("--namespace", help="only this namespace")
        parser.add_argument("--batch-size", type=int, default=None, help="texts per call (EMBEDDING_BATCH_SIZE)")
        parser.add_argument("--dry-run", action="store_true", help="count what would be re-embedded, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        embedder = embeddings.backend()
        if isinstance(embedder, embeddings.DisabledBackend):
            raise CommandError(f"cannot re-embed: {embedder.reason}")
        model = embeddings.model_id(embedder)
        if options["dry_run"]:
            qs = Memory.objects.all()
            if options["namespace"]:
                qs = qs.filter(namespace=options["namespace"])
            if not options["all"]:
                qs = qs.exclude(embedding_model=model, embedding_state=EmbeddingState.READY)
            self.stdout.write(f"{qs.count()} memories would be re-embedded with {model}")
            return
        reset = services.memory_reembed_reset(everything=options["all"], namespace=options["namespace"])
        pending = Memory.objects.filter(embedding_state=EmbeddingState.PENDING)
        if options["namespace"]:
            pending = pending.filter(namespace=options["namespace"])
        total = pending.count()
        self.stdout.write(f"re-embedding {total} memories with {model} ({reset} reset)")
        size = max(1, options["batch_size"] or settings.EMBEDDING_BATCH_SIZE)
        done = failed = 0
        started = time.monotonic()
        while True:
            try:
                report = services.memory_embed_batch(batch_size=size, namespace=options["namespace"])
            except embeddings.EmbeddingError as exc:
                raise CommandError(f"stopped after {done} memories: {exc}") from None
            if report.embedded + report.failed == 0:
                break
            done += report.embedded + report.failed
            failed += report.failed
            self.stdout.write(_bar(done, total, started), ending="")
            self.stdout.flush()
        self.stdout.write(_bar(done, total, started))
        self.stdout.write(self.style.SUCCESS(f"done: {done - failed} embedded, {failed} failed"))
