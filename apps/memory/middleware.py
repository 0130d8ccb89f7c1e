"""Dramatiq middleware: a worker that consumes the `memory` queue loads the embedding model when it boots, so the
first batch (and a search served by this process) never waits for the load, and picks up memories that were
stored while no backend was available."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from django.db import close_old_connections

logger = logging.getLogger(__name__)


def warm_embeddings(*, resume: bool) -> bool:
    """Load the local model now; with `resume`, requeue the backlog. True when the backend is ready."""
    from apps.memory import embeddings, services

    embedder = embeddings.backend()
    if isinstance(embedder, embeddings.DisabledBackend):
        return False
    try:
        warm = getattr(embedder, "warm", None)
        if warm is not None:
            warm()
    except embeddings.EmbeddingError as exc:
        logger.warning("embedding backend unavailable: %s", exc)
        return False
    if resume:
        counts = services.memory_embed_resume()
        if counts["other_model"]:
            logger.warning(
                "%d memories carry vectors of another embedding model than %s and are found by words only: run "
                "`manage.py reembed` to move them",
                counts["other_model"],
                embeddings.model_id(embedder),
            )
        if counts["pending"]:
            from apps.memory.actors import memory_embed_pending

            memory_embed_pending.send()
            logger.info("embedding %d pending memories (%d resumed)", counts["pending"], counts["resumed"])
    return True


class EmbeddingWarmup(dramatiq.Middleware):
    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        queues = getattr(worker, "consumer_whitelist", None)  # None: this worker consumes every queue
        if queues and "memory" not in queues:
            return
        close_old_connections()
        try:
            warm_embeddings(resume=True)
        except Exception:  # a boot hook must never stop the worker; the actor reports the same error on use
            logger.exception("embedding warm-up failed")
        finally:
            close_old_connections()  # the boot thread's connection is not a worker thread's
