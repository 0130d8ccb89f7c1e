"""Memory worker actors (queue `memory`): thin, idempotent, each calls one service."""

from __future__ import annotations

import logging

import dramatiq

from apps.memory import embeddings, services

logger = logging.getLogger(__name__)


@dramatiq.actor(queue_name="memory", max_retries=8, min_backoff=2_000, max_backoff=300_000, time_limit=600_000)
def memory_embed_pending() -> None:
    """Embed every pending memory, in batches. Many stores → many messages; later ones find nothing to do.

    An unavailable backend raises `EmbeddingUnavailable`, so Dramatiq retries with backoff while the memories
    stay pending (searchable by words). A permanent error (wrong dimensions) has already marked its batch failed
    with the reason: retrying cannot help, so it is logged and the message ends.
    """
    try:
        services.memory_embed_pending()
    except embeddings.EmbeddingBackendMissing as exc:
        # Retrying cannot install a package: one line, no traceback; the memories stay pending until a worker
        # with the backend starts (apps.memory.middleware.EmbeddingWarmup).
        logger.warning("memory embedding waits for a backend: %s", exc)
    except embeddings.EmbeddingError as exc:
        if exc.retryable:
            raise
        logger.error("memory embedding stopped: %s", exc)


@dramatiq.actor(queue_name="memory", max_retries=0, time_limit=1_800_000)
def memory_compact_namespace(namespace: str, similarity_threshold: float = 0.95) -> None:
    """Scheduled compaction of one namespace (the `memory.compact` tool runs the same service as a job)."""
    services.memory_compact(namespace=namespace, similarity_threshold=similarity_threshold)
