"""Memories: what agents keep and recall across runs.

Bi-temporal like Graphiti: `event_time` is when a memory was true, `ingested_at` when we learned it. Nothing is
deleted by the platform: compaction supersedes (`superseded_by`) and expires (`expired_at`), so provenance stays
reachable. Exact duplicates are refused per namespace by `content_hash` (a unique constraint, not a Python check).
"""

from __future__ import annotations

import uuid

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import Q
from django.utils import timezone
from pgvector.django import HnswIndex, VectorField

# The column's width. all-MiniLM-L6-v2 gives 384; a model of another width needs a migration and `reembed`.
EMBEDDING_DIMENSIONS = 384
# Full-text configuration: the generated tsvector column and every tsquery must use the same one.
TEXT_SEARCH_CONFIG = "english"


class EmbeddingState(models.TextChoices):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class Memory(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    namespace = models.CharField(max_length=200)
    content = models.TextField()
    kind = models.CharField(max_length=64, default="note")
    # Optional subject key ("user.timezone"): compaction treats older memories with the same key as stale facts.
    key = models.CharField(max_length=200, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    # Who and what produced it: principal_id, tool, request_id, run_id, job_id (whatever the caller had).
    source = models.JSONField(default=dict, blank=True)
    event_time = models.DateTimeField(default=timezone.now)
    ingested_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="supersedes"
    )
    superseded_at = models.DateTimeField(null=True, blank=True)
    supersede_reason = models.CharField(max_length=200, blank=True, default="")
    content_hash = models.CharField(max_length=64, editable=False)

    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True, blank=True)
    embedding_state = models.CharField(max_length=16, choices=EmbeddingState.choices, default=EmbeddingState.PENDING)
    embedding_model = models.CharField(max_length=200, blank=True, default="")
    embedding_error = models.TextField(blank=True, default="")
    embedding_attempts = models.PositiveIntegerField(default=0)

    search_vector = models.GeneratedField(
        expression=SearchVector("content", config=TEXT_SEARCH_CONFIG),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["namespace", "content_hash"], name="memory_unique_content_per_namespace"),
        ]
        indexes = [
            HnswIndex(
                name="memory_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            GinIndex(fields=["search_vector"], name="memory_search_vector_gin"),
            models.Index(fields=["namespace", "event_time", "id"], name="memory_ns_event_time"),
            models.Index(fields=["namespace", "key"], name="memory_ns_key", condition=~Q(key="")),
            models.Index(
                fields=["ingested_at"], name="memory_embedding_pending", condition=Q(embedding_state="pending")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.namespace}: {self.content[:60]}"


class MemoryNamespaceGrant(models.Model):
    """Access to a shared namespace, for one principal (`principal_id`) or everyone holding a role (`role`).

    A principal always owns the namespace named after its id ("user:42"); everything else needs a grant.
    """

    namespace = models.CharField(max_length=200)
    principal_id = models.CharField(max_length=200, blank=True, default="")
    role = models.CharField(max_length=100, blank=True, default="")
    can_write = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(principal_id="") & ~Q(role="")) | (~Q(principal_id="") & Q(role="")),
                name="memory_grant_principal_xor_role",
            ),
            models.UniqueConstraint(fields=["namespace", "principal_id", "role"], name="memory_grant_unique"),
        ]
        indexes = [models.Index(fields=["namespace"], name="memory_grant_namespace")]

    def __str__(self) -> str:
        who = self.principal_id or f"role {self.role}"
        return f"{who} → {self.namespace} ({'read/write' if self.can_write else 'read'})"
