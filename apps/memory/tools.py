"""MCP tools of the memory capability: memory.store / memory.search / memory.timeline (inline), memory.compact (job)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.gateway.registry import Annotations, ToolContext, ToolError, tool
from apps.memory import embeddings, selectors, services
from apps.memory.models import Memory

_NAMESPACE = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "description": "Namespace to act on. Default: your own (named after your principal id). Shared ones need a grant.",
}
MAX_TTL_SECONDS = 10 * 365 * 86_400  # ten years: "now + ttl" stays a date the database can hold
_READ_ONLY = Annotations(read_only=True, destructive=False, idempotent=True, open_world=False)
_WRITES = Annotations(read_only=False, destructive=False, idempotent=True, open_world=False)
_DATE_TIME = {"type": "string", "format": "date-time", "description": "ISO 8601 with a timezone"}
_FILTERS: dict[str, Any] = {
    "namespace": _NAMESPACE,
    "kinds": {"type": "array", "items": {"type": "string"}, "maxItems": 20, "description": "only these kinds"},
    "metadata": {"type": "object", "description": "only memories whose metadata contains this object"},
    "event_after": {**_DATE_TIME, "description": "event time ≥ this (ISO 8601 with timezone)"},
    "event_before": {**_DATE_TIME, "description": "event time < this (ISO 8601 with timezone)"},
    "include_superseded": {"type": "boolean", "default": False, "description": "also merged/stale memories"},
}


def _parse_time(args: dict[str, Any], name: str, where: str | None = None) -> datetime | None:
    value = args.get(name)
    if value is None:
        return None
    field = where or name
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ToolError("invalid_arguments", f"{field}: {value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise ToolError("invalid_arguments", f"{field}: include a timezone (e.g. 2026-11-25T13:00:00Z)")
    return parsed


def _namespace(ctx: ToolContext, args: dict[str, Any], *, write: bool = False) -> str:
    try:
        return selectors.memory_namespace_access(principal=ctx.principal, namespace=args.get("namespace"), write=write)
    except selectors.MemoryAccessError as exc:
        raise ToolError(exc.code, exc.message, data={"field": "namespace"}) from None


def _filters(ctx: ToolContext, args: dict[str, Any]) -> selectors.MemoryFilters:
    return selectors.MemoryFilters(
        namespace=_namespace(ctx, args),
        kinds=tuple(args.get("kinds") or ()),
        metadata=args.get("metadata") or None,
        event_after=_parse_time(args, "event_after"),
        event_before=_parse_time(args, "event_before"),
        include_superseded=bool(args.get("include_superseded", False)),
        include_expired=bool(args.get("include_expired", False)),
    )


def memory_dict(memory: Memory) -> dict[str, Any]:
    return {
        "id": str(memory.pk),
        "namespace": memory.namespace,
        "content": memory.content,
        "kind": memory.kind,
        "key": memory.key or None,
        "metadata": memory.metadata,
        "source": memory.source,
        "event_time": memory.event_time.isoformat(),
        "ingested_at": memory.ingested_at.isoformat(),
        "expires_at": memory.expires_at.isoformat() if memory.expires_at else None,
        "superseded_by": str(memory.superseded_by_id) if memory.superseded_by_id else None,
        "embedding": memory.embedding_state,
    }


# ------------------------------------------------------------------------------------------ store

STORE_INPUT = {
    "type": "object",
    "properties": {
        "namespace": _NAMESPACE,
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": settings.MEMORY_MAX_ITEMS_PER_STORE,
            "items": {
                "type": "object",
                "properties": {
                    "content": {"type": "string", "minLength": 1, "maxLength": settings.MEMORY_MAX_CONTENT_CHARS},
                    "kind": {"type": "string", "default": "note", "description": "fact, preference, event, note…"},
                    "key": {
                        "type": "string",
                        "maxLength": 200,
                        "description": "subject key (e.g. 'user.timezone'): compaction supersedes older facts with "
                        "the same kind and key",
                    },
                    "metadata": {"type": "object"},
                    "event_time": {**_DATE_TIME, "description": "when it was true (default: now)"},
                    "ttl_seconds": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_TTL_SECONDS,
                        "description": "expire this long after now",
                    },
                },
                "required": ["content"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["items"],
    "additionalProperties": False,
}


@tool(
    name="memory.store",
    title="Store memories",
    description="Store one or many memories (content, kind, key, metadata, event time, TTL) in a namespace. "
    "Returns ids at once: searchable by words immediately, by meaning once embedded. Exact duplicates in a "
    "namespace are not stored twice (the existing id is returned with status 'duplicate'). Errors: "
    "invalid_arguments (names the item and field), namespace_not_found, namespace_read_only.",
    input_schema=STORE_INPUT,
    annotations=_WRITES,
)
def memory_store(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    namespace = _namespace(ctx, args, write=True)
    now = timezone.now()
    items = []
    for index, raw in enumerate(args.get("items") or []):
        ttl = raw.get("ttl_seconds")
        items.append(
            services.MemoryInput(
                content=str(raw.get("content", "")),
                kind=raw.get("kind") or "note",
                key=raw.get("key") or "",
                metadata=raw.get("metadata") or {},
                event_time=_parse_time(raw, "event_time", f"items[{index}].event_time"),
                expires_at=now + timedelta(seconds=int(ttl)) if ttl else None,
            )
        )
    source = {
        "principal_id": ctx.principal.id,
        "tool": "memory.store",
        **{name: getattr(ctx, name) for name in ("request_id", "run_id", "job_id") if getattr(ctx, name, None)},
    }
    try:
        outcomes = services.memory_store(namespace=namespace, items=items, source=source)
    except services.MemoryInputError as exc:
        raise ToolError("invalid_arguments", exc.message, data={"field": exc.field}) from None
    embedder = embeddings.backend()
    if isinstance(embedder, embeddings.DisabledBackend):
        embedding = {
            "state": "unavailable",
            "detail": f"{embedder.reason}; stored memories stay pending and are "
            "found by words until a backend embeds them (manage.py reembed)",
        }
    else:
        embedding = {"state": "queued", "backend": embeddings.model_id(embedder)}
    return {
        "namespace": namespace,
        "items": [
            {
                "id": str(outcome.memory.pk),
                "status": "stored" if outcome.created else "duplicate",
                "embedding": outcome.memory.embedding_state,
            }
            for outcome in outcomes
        ],
        "stored": sum(1 for outcome in outcomes if outcome.created),
        "duplicates": sum(1 for outcome in outcomes if not outcome.created),
        "embedding": embedding,
    }


# ----------------------------------------------------------------------------------------- search


@tool(
    name="memory.search",
    title="Search memories",
    description="Hybrid search (meaning + words, fused by reciprocal rank) in a namespace, with filters (kinds, "
    "metadata, event-time range, superseded). Each hit carries its scores: rrf, vector similarity/rank, text "
    "score/rank/coverage (share of the query's words it holds). Without embeddings it answers from words alone "
    "and says so in `degraded`. Errors: invalid_arguments, namespace_not_found, embedding_unavailable (mode=vector "
    "without embeddings).",
    input_schema={
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 2000},
            **_FILTERS,
            "top_k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
            "score_threshold": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "minimum cosine similarity for a match by meaning (matches by words are kept)",
            },
            "mode": {"type": "string", "enum": ["hybrid", "vector", "text"], "default": "hybrid"},
        },
        "required": ["query"],
        "additionalProperties": False,
    },
    annotations=_READ_ONLY,
)
def memory_search(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    filters = _filters(ctx, args)
    try:
        result = selectors.memory_search(
            filters=filters,
            query=str(args.get("query", "")),
            top_k=int(args.get("top_k", 10)),
            mode=args.get("mode", "hybrid"),
            min_similarity=args.get("score_threshold"),
        )
    except selectors.MemoryQueryError as exc:
        raise ToolError(exc.code, exc.message) from None
    return {
        "namespace": filters.namespace,
        "mode": result.mode,
        "degraded": result.degraded,
        "pending_embeddings": result.pending_embeddings,
        "hits": [
            {
                **memory_dict(hit.memory),
                "scores": {
                    "rrf": hit.score,
                    "vector_similarity": hit.similarity,
                    "vector_rank": hit.vector_rank,
                    "text_score": hit.text_score,
                    "text_rank": hit.text_rank,
                    "text_coverage": hit.text_coverage,
                },
            }
            for hit in result.hits
        ],
        "timings_ms": result.timings_ms,
    }


# --------------------------------------------------------------------------------------- timeline


@tool(
    name="memory.timeline",
    title="Memory timeline",
    description="Memories in event-time order with cursor pagination (pass next_cursor back), optionally with "
    "per-day or per-week counts over the whole filtered range.",
    input_schema={
        "type": "object",
        "properties": {
            **_FILTERS,
            "include_expired": {"type": "boolean", "default": False},
            "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
            "cursor": {"type": "string", "maxLength": 500},
            "order": {"type": "string", "enum": ["asc", "desc"], "default": "asc"},
            "bucket": {"type": "string", "enum": ["day", "week"]},
        },
        "additionalProperties": False,
    },
    annotations=_READ_ONLY,
)
def memory_timeline(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    filters = _filters(ctx, args)
    try:
        page = selectors.memory_timeline(
            filters=filters,
            limit=int(args.get("limit", 50)),
            cursor=args.get("cursor"),
            order=args.get("order", "asc"),
            bucket=args.get("bucket"),
        )
    except selectors.MemoryQueryError as exc:
        raise ToolError(exc.code, exc.message, data={"field": "cursor"}) from None
    result: dict[str, Any] = {
        "namespace": filters.namespace,
        "items": [memory_dict(memory) for memory in page.items],
        "next_cursor": page.next_cursor,
    }
    if page.buckets is not None:
        result["buckets"] = page.buckets
    return result


# ---------------------------------------------------------------------------------------- compact


@tool(
    name="memory.compact",
    title="Compact memories",
    description="A job on the memory queue: expire memories past their TTL, supersede stale facts (same kind and "
    "key, older event time) and merge near-duplicates above a similarity threshold. Never deletes: superseded "
    "memories stay reachable (include_superseded). dry_run reports the plan without changing anything.",
    input_schema={
        "type": "object",
        "properties": {
            "namespace": _NAMESPACE,
            "similarity_threshold": {"type": "number", "minimum": 0.5, "maximum": 1.0, "default": 0.95},
            "dry_run": {"type": "boolean", "default": False},
            "expire": {"type": "boolean", "default": True},
            "supersede_stale": {"type": "boolean", "default": True},
            "merge": {"type": "boolean", "default": True},
        },
        "additionalProperties": False,
    },
    annotations=_WRITES,
    execution="queued",
    queue="memory",
    timeout_s=1800.0,
    rerun="safe",  # compaction converges: a second pass over a compacted namespace changes nothing
    task_support="optional",
)
def memory_compact(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    namespace = _namespace(ctx, args, write=True)
    try:
        report = services.memory_compact(
            namespace=namespace,
            similarity_threshold=float(args.get("similarity_threshold", 0.95)),
            dry_run=bool(args.get("dry_run", False)),
            expire=bool(args.get("expire", True)),
            supersede_stale=bool(args.get("supersede_stale", True)),
            merge=bool(args.get("merge", True)),
        )
    except services.MemoryInputError as exc:
        raise ToolError("invalid_arguments", exc.message, data={"field": exc.field}) from None
    return report.as_dict()
