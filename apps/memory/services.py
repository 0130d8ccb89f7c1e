"""Writes of memories: store, embed (batched, on the `memory` queue), re-embed reset, compaction.

Nothing here deletes a memory: compaction supersedes (`superseded_by`) and expires (`expired_at`), so every
original stays reachable with its provenance.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.memory import embeddings
from apps.memory.models import EmbeddingState, Memory

# After this many failed tries of a backend that is installed but erroring (an unreachable EMBEDDING_URL, say) a
# pending memory is marked failed (`reembed` retries it). A backend that is not installed at all is not a failure
# of the memory: it stays pending and is embedded once a worker with the backend starts (`memory_embed_resume`).
MAX_EMBEDDING_ATTEMPTS = 5
MAX_METADATA_BYTES = 16_384
_KIND = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


class MemoryInputError(Exception):
    """Bad input: `field` names the argument (`items[2].content`), the message what to do."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = f"{field}: {message}"


@dataclass(frozen=True, kw_only=True)
class MemoryInput:
    content: str
    kind: str = "note"
    key: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    event_time: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class StoreOutcome:
    memory: Memory
    created: bool


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def _validate(items: Sequence[MemoryInput]) -> None:
    if not items:
        raise MemoryInputError("items", "give at least one item to store")
    if len(items) > settings.MEMORY_MAX_ITEMS_PER_STORE:
        raise MemoryInputError(
            "items",
            f"{len(items)} items is more than the limit of {settings.MEMORY_MAX_ITEMS_PER_STORE} per call "
            "(MEMORY_MAX_ITEMS_PER_STORE): split them over several calls",
        )
    limit = settings.MEMORY_MAX_CONTENT_CHARS
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if not item.content.strip():
            raise MemoryInputError(f"{where}.content", "must contain at least one non-space character")
        if len(item.content) > limit:
            raise MemoryInputError(
                f"{where}.content",
                f"{len(item.content)} characters is more than the limit of {limit} (MEMORY_MAX_CONTENT_CHARS): "
                "split it into several memories",
            )
        if not _KIND.match(item.kind):
            raise MemoryInputError(f"{where}.kind", "use 1-64 lower-case letters, digits, '_', '.', '-'")
        if len(item.key) > 200:
            raise MemoryInputError(f"{where}.key", "must be at most 200 characters")
        if not isinstance(item.metadata, dict):
            raise MemoryInputError(f"{where}.metadata", "must be a JSON object")
        if len(json.dumps(item.metadata)) > MAX_METADATA_BYTES:
            raise MemoryInputError(f"{where}.metadata", f"must serialise to at most {MAX_METADATA_BYTES} bytes")
        for name in ("event_time", "expires_at"):
            value = getattr(item, name)
            if value is not None and timezone.is_naive(value):
                raise MemoryInputError(f"{where}.{name}", "include a timezone (e.g. 2026-11-25T13:00:00Z)")


def _embedding_enabled() -> bool:
    return not isinstance(embeddings.backend(), embeddings.DisabledBackend)


@transaction.atomic
def memory_store(*, namespace: str, items: Sequence[MemoryInput], source: dict[str, Any]) -> list[StoreOutcome]:
    """Store memories in `namespace` (caller checked access). Returns one outcome per item, in order.

    An item whose exact content is already in the namespace is not stored again: its outcome names the existing
    memory (`created=False`). New memories are searchable by words at once and by meaning once the `memory`
    worker has embedded them (enqueued after commit).
    """
    _validate(items)
    now = timezone.now()
    prepared: dict[str, Memory] = {}
    hashes: list[str] = []
    for item in items:
        content = item.content.strip()
        digest = content_hash(content)
        hashes.append(digest)
        if digest in prepared:
            continue
        prepared[digest] = Memory(
            namespace=namespace,
            content=content,
            kind=item.kind,
            key=item.key,
            metadata=item.metadata,
            source=source,
            event_time=item.event_time or now,
            ingested_at=now,
            expires_at=item.expires_at,
            content_hash=digest,
        )
    existing = set(
        Memory.objects.filter(namespace=namespace, content_hash__in=list(prepared)).values_list(
            "content_hash", flat=True
        )
    )
    new = [memory for digest, memory in prepared.items() if digest not in existing]
    # ON CONFLICT DO NOTHING: a concurrent store of the same content wins the race, we answer with its row.
    Memory.objects.bulk_create(new, ignore_conflicts=True)
    created_ids = {memory.pk for memory in new}
    by_hash = {m.content_hash: m for m in Memory.objects.filter(namespace=namespace, content_hash__in=hashes)}
    outcomes = []
    seen: set[str] = set()
    for digest in hashes:
        memory = by_hash[digest]
        outcomes.append(StoreOutcome(memory=memory, created=memory.pk in created_ids and digest not in seen))
        seen.add(digest)
    if any(outcome.created for outcome in outcomes) and _embedding_enabled():
        from apps.memory.actors import memory_embed_pending

        transaction.on_commit(partial(memory_embed_pending.send))
    return outcomes


@dataclass(kw_only=True)
class EmbedReport:
    embedded: int = 0
    failed: int = 0


def memory_embed_batch(*, batch_size: int, namespace: str | None = None) -> EmbedReport:
    """Embed up to `batch_size` pending memories (oldest first) in one backend call.

    Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several workers share the backlog without doubling work.
    A permanent error (wrong dimensions) marks the batch failed; an unavailable backend counts an attempt and
    re-raises so the actor retries later (after MAX_EMBEDDING_ATTEMPTS the rows are marked failed).
    """
    error: embeddings.EmbeddingError | None = None
    report = EmbedReport()
    with transaction.atomic():
        qs = Memory.objects.filter(embedding_state=EmbeddingState.PENDING)
        if namespace is not None:
            qs = qs.filter(namespace=namespace)
        rows = list(
            qs.select_for_update(skip_locked=True)
            .order_by("ingested_at")
            .only("id", "content", "embedding_attempts")[:batch_size]
        )
        if not rows:
            return report
        embedder = embeddings.backend()
        try:
            vectors = embedder.embed([row.content for row in rows])
        except embeddings.EmbeddingBackendMissing as exc:
            # Nothing to count against the memories: they wait, pending, for a worker that has the backend.
            Memory.objects.filter(pk__in=[row.pk for row in rows]).update(embedding_error=str(exc))
            error = exc
        except embeddings.EmbeddingError as exc:
            error = exc
            for row in rows:
                row.embedding_attempts += 1
                row.embedding_error = str(exc)
                if not exc.retryable or row.embedding_attempts >= MAX_EMBEDDING_ATTEMPTS:
                    row.embedding_state = EmbeddingState.FAILED
                    report.failed += 1
            Memory.objects.bulk_update(rows, ["embedding_attempts", "embedding_error", "embedding_state"])
        else:
            model = embeddings.model_id(embedder)
            for row, vector in zip(rows, vectors, strict=True):
                row.embedding = vector
                row.embedding_state = EmbeddingState.READY
                row.embedding_model = model
                row.embedding_error = ""
                row.embedding_attempts += 1
            Memory.objects.bulk_update(
                rows, ["embedding", "embedding_state", "embedding_model", "embedding_error", "embedding_attempts"]
            )
            report.embedded = len(rows)
    if error is not None:
        raise error
    return report


def memory_embed_pending(*, batch_size: int | None = None, max_items: int | None = None) -> EmbedReport:
    """Embed pending memories batch after batch until none is left (or `max_items` were handled)."""
    size = batch_size or settings.EMBEDDING_BATCH_SIZE
    total = EmbedReport()
    while max_items is None or total.embedded + total.failed < max_items:
        report = memory_embed_batch(batch_size=size)
        total.embedded += report.embedded
        total.failed += report.failed
        if report.embedded + report.failed == 0:
            break
    return total


# Failures recorded by earlier versions for a backend that was merely absent or still loading: not the memory's
# fault, so they are retried when a backend is available.
_ABSENT_BACKEND_ERRORS = Q(embedding_error__contains="is not installed") | Q(
    embedding_error__contains="is loading in this process"
)


def memory_embed_resume() -> dict[str, int]:
    """At the start of a process with a working backend: put memories that failed only because no backend was
    installed back to pending, and count those carrying another model's vectors (`reembed` moves them).

    Returns {"resumed": n, "pending": n, "other_model": n}."""
    embedder = embeddings.backend()
    resumed = (
        Memory.objects.filter(embedding_state=EmbeddingState.FAILED)
        .filter(_ABSENT_BACKEND_ERRORS)
        .update(embedding_state=EmbeddingState.PENDING, embedding_error="", embedding_attempts=0)
    )
    pending = Memory.objects.filter(embedding_state=EmbeddingState.PENDING).count()
    other_model = (
        Memory.objects.filter(embedding_state=EmbeddingState.READY)
        .exclude(embedding_model=embeddings.model_id(embedder))
        .count()
    )
    return {"resumed": resumed, "pending": pending, "other_model": other_model}


def memory_reembed_reset(*, everything: bool = False, namespace: str | None = None) -> int:
    """Mark memories for embedding again: those of another model or not ready (`everything`: all of them).

    Their old vectors are cleared (vectors of two models are not comparable); until re-embedded they are found
    by words. Returns how many were reset.
    """
    embedder = embeddings.backend()
    qs = Memory.objects.all()
    if namespace is not None:
        qs = qs.filter(namespace=namespace)
    if not everything:
        qs = qs.filter(~Q(embedding_model=embeddings.model_id(embedder)) | ~Q(embedding_state=EmbeddingState.READY))
    return qs.update(embedding=None, embedding_state=EmbeddingState.PENDING, embedding_error="", embedding_attempts=0)


# ---------------------------------------------------------------------------------------- compaction


@dataclass(kw_only=True)
class CompactReport:
    namespace: str
    dry_run: bool
    merged: list[dict[str, Any]] = field(default_factory=list)
    stale: list[dict[str, Any]] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "dry_run": self.dry_run,
            "merged": self.merged,
            "stale": self.stale,
            "expired": self.expired,
            "skipped": self.skipped,
            "superseded_count": sum(len(group["superseded"]) for group in (*self.merged, *self.stale)),
            "expired_count": len(self.expired),
        }


def _active(namespace: str, now: datetime) -> Any:
    return Memory.objects.filter(namespace=namespace, superseded_by__isnull=True, expired_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )


def _active_sql(alias: str) -> str:
    return (
        f"{alias}.superseded_by_id IS NULL AND {alias}.expired_at IS NULL "
        f"AND ({alias}.expires_at IS NULL OR {alias}.expires_at > now()) AND {alias}.embedding IS NOT NULL"
    )


def _near_duplicate_pairs(namespace: str, threshold: float, neighbours: int = 10) -> list[tuple[Any, Any, float]]:
    """(a, b, similarity) for active embedded memories of the same kind closer than `threshold` (HNSW per row)."""
    sql = f"""
        SELECT a.id, b.id, 1 - (a.embedding <=> b.embedding) AS similarity
        FROM memory_memory a
        CROSS JOIN LATERAL (
            SELECT c.id, c.embedding FROM memory_memory c
            WHERE c.namespace = a.namespace AND c.kind = a.kind AND c.id <> a.id AND {_active_sql("c")}
            ORDER BY c.embedding <=> a.embedding LIMIT %s
        ) b
        WHERE a.namespace = %s AND {_active_sql("a")} AND 1 - (a.embedding <=> b.embedding) >= %s
    """  # noqa: S608 - only our own column names are interpolated
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(settings.MEMORY_HNSW_EF_SEARCH)])
        cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        cursor.execute(sql, [neighbours, namespace, threshold])
        return [(row[0], row[1], float(row[2])) for row in cursor.fetchall()]


def _supersede(memories: Sequence[Memory], *, by: Memory, reason: str, now: datetime) -> None:
    for memory in memories:
        memory.superseded_by = by
        memory.superseded_at = now
        memory.supersede_reason = reason[:200]
    Memory.objects.bulk_update(memories, ["superseded_by", "superseded_at", "supersede_reason"])


@transaction.atomic
def memory_compact(
    *,
    namespace: str,
    similarity_threshold: float = 0.95,
    dry_run: bool = False,
    expire: bool = True,
    supersede_stale: bool = True,
    merge: bool = True,
) -> CompactReport:
    """Compact one namespace: expire items past their TTL, supersede stale facts, merge near-duplicates.

    - expire: `expires_at` passed → `expired_at` set (kept, hidden from search and timeline by default).
    - stale facts: memories with the same `kind` and `key`: the one with the latest event time is current,
      the older ones are superseded by it.
    - near-duplicates: same `kind`, cosine similarity ≥ `similarity_threshold`: the newest (event time, then
      ingestion) stays, the others are superseded by it. Pairs with different non-empty keys are skipped
      (similar words about different subjects). A namespace already compacted yields an empty report.
    Nothing is deleted; `dry_run` reports the same plan and writes nothing. Holds an advisory lock per namespace
    so two compactions of one namespace never interleave.
    """
    if not 0.5 <= similarity_threshold <= 1.0:
        raise MemoryInputError("similarity_threshold", "must be between 0.5 and 1.0")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"memory.compact:{namespace}"])
    now = timezone.now()
    report = CompactReport(namespace=namespace, dry_run=dry_run)

    if expire:
        expiring = list(
            Memory.objects.filter(
                namespace=namespace, expired_at__isnull=True, expires_at__isnull=False, expires_at__lte=now
            ).order_by("expires_at")
        )
        report.expired = [str(memory.pk) for memory in expiring]
        if expiring and not dry_run:
            Memory.objects.filter(pk__in=[m.pk for m in expiring]).update(expired_at=now)

    superseded: set[Any] = set()
    if supersede_stale:
        keyed = _active(namespace, now).exclude(key="").order_by("kind", "key", "-event_time", "-ingested_at")
        groups: dict[tuple[str, str], list[Memory]] = {}
        for memory in keyed:
            groups.setdefault((memory.kind, memory.key), []).append(memory)
        for (kind, key), members in groups.items():
            if len(members) < 2:
                continue
            current, older = members[0], members[1:]
            report.stale.append(
                {"kind": kind, "key": key, "current": str(current.pk), "superseded": [str(m.pk) for m in older]}
            )
            superseded.update(m.pk for m in older)
            if not dry_run:
                _supersede(older, by=current, reason=f"stale: a newer fact has key {key!r}", now=now)

    if merge:
        pairs = [
            pair for pair in _near_duplicate_pairs(namespace, similarity_threshold) if not superseded & {*pair[:2]}
        ]
        ids = {memory_id for a, b, _ in pairs for memory_id in (a, b)}
        rows = Memory.objects.in_bulk(list(ids))
        neighbours: dict[Any, list[tuple[Any, float]]] = {}
        for a, b, similarity in pairs:
            neighbours.setdefault(a, []).append((b, similarity))
        # Star clustering, newest first: a canonical absorbs its unassigned neighbours (no chains A~B~C).
        order = sorted(ids, key=lambda i: (rows[i].event_time, rows[i].ingested_at, str(i)), reverse=True)
        assigned: set[Any] = set()
        for canonical_id in order:
            if canonical_id in assigned or canonical_id not in neighbours:
                continue
            canonical = rows[canonical_id]
            absorbed: list[tuple[Memory, float]] = []
            for other_id, similarity in sorted(neighbours[canonical_id], key=lambda n: -n[1]):
                if other_id in assigned:
                    continue
                other = rows[other_id]
                if other.key and canonical.key and other.key != canonical.key:
                    report.skipped.append(
                        {
                            "ids": [str(canonical_id), str(other_id)],
                            "similarity": round(similarity, 4),
                            "reason": "different keys: similar wording about different subjects",
                        }
                    )
                    continue
                absorbed.append((other, similarity))
            if not absorbed:
                continue
            assigned.add(canonical_id)
            assigned.update(other.pk for other, _ in absorbed)
            report.merged.append(
                {
                    "canonical": str(canonical_id),
                    "superseded": [str(other.pk) for other, _ in absorbed],
                    "similarity": [round(similarity, 4) for _, similarity in absorbed],
                }
            )
            if not dry_run:
                _supersede(
                    [other for other, _ in absorbed],
                    by=canonical,
                    reason=f"merged: near-duplicate (similarity ≥ {similarity_threshold})",
                    now=now,
                )
    return report
