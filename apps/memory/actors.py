"""Memory worker actors (queue `memory`): thin, idempotent, each calls one service."""

from __future__ import annotations

import dramatiq

from apps.memory import services


@dramatiq.actor(queue_name="memory", max_retries=8, min_backoff=2_000, max_backoff=300_000, time_limit=600_000)
def memory_embed_pending() -> None:
    """Embed every pending memory, in batches. Many stores → many messages; later ones find nothing to do.

    An unavailable backend raises `EmbeddingUnavailable`, so Dramatiq retries with backoff while the memories
    stay pending (searchable by words).
    """
    services.memory_embed_pending()


@dramatiq.actor(queue_name="memory", max_retries=0, time_limit=1_800_000)
def memory_compact_namespace(namespace: str, similarity_threshold: float = 0.95) -> None:
    """Scheduled compaction of one namespace (the `memory.compact` tool runs the same service as a job)."""
    services.memory_compact(namespace=namespace, similarity_threshold=similarity_threshold)
