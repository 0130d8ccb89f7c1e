"""Reads of memories: namespace access, hybrid search, timeline.

Search fuses two ranked candidate lists with reciprocal rank fusion (RRF, k=60):
- vector: cosine distance on the HNSW index (`SET LOCAL hnsw.ef_search` / `hnsw.iterative_scan` inside the
  selector's transaction, so filtered searches still fill `top_k`);
- text: the generated `tsvector` (GIN) against an OR of the query's lexemes, ranked by `ts_rank_cd` (a memory
  that shares any word is a candidate, like BM25; one that shares more ranks higher). In hybrid mode only text
  hits holding at least half of the query's lexemes are fused (the rest is noise next to the vector list).
When embeddings are unavailable the search answers from text alone and says so (`degraded`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from typing import Any, Literal

from django.conf import settings
from django.core import signing
from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDay, TruncWeek
from django.utils import timezone

from apps.accounts.principal import Principal
from apps.memory import embeddings
from apps.memory.models import TEXT_SEARCH_CONFIG, EmbeddingState, Memory, MemoryNamespaceGrant

RRF_K = 60
MIN_TEXT_COVERAGE = 0.5
MAX_PREFILTER_LEXEMES = 12
MAX_TSQUERY_COMBINATIONS = 256
Mode = Literal["hybrid", "vector", "text"]


class MemoryAccessError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class MemoryQueryError(Exception):
    """A search or timeline request that cannot be answered as asked (names the argument)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def own_namespace(principal: Principal) -> str:
    return principal.id


def memory_namespace_access(*, principal: Principal, namespace: str | None, write: bool = False) -> str:
    """The namespace a call acts on: the principal's own by default, a shared one only through a grant.

    Raises MemoryAccessError("namespace_not_found") for a namespace the principal may not see (without saying
    whether it exists), and ("namespace_read_only") for a write with a read grant.
    """
    mine = own_namespace(principal)
    if namespace is None or namespace == mine:
        return mine
    grants = list(
        MemoryNamespaceGrant.objects.filter(namespace=namespace).filter(
            Q(principal_id=principal.id) | Q(role__in=list(principal.roles))
        )
    )
    if not grants:
        raise MemoryAccessError(
            "namespace_not_found",
            f"namespace {namespace!r} is unknown to you: your own namespace is {mine!r}; a shared namespace needs "
            "a grant (MemoryNamespaceGrant in the admin) for you or one of your roles",
        )
    if write and not any(grant.can_write for grant in grants):
        raise MemoryAccessError(
            "namespace_read_only",
            f"namespace {namespace!r} is shared with you read-only: ask an admin for a grant with can_write",
        )
    return namespace


@dataclass(frozen=True, kw_only=True)
class MemoryFilters:
    namespace: str
    kinds: Sequence[str] = ()
    metadata: dict[str, Any] | None = None
    event_after: datetime | None = None
    event_before: datetime | None = None
    include_superseded: bool = False
    include_expired: bool = False

    def sql(self) -> tuple[str, list[Any]]:
        clauses = ["m.namespace = %s"]
        params: list[Any] = [self.namespace]
        if not self.include_superseded:
            clauses.append("m.superseded_by_id IS NULL")
        if not self.include_expired:
            clauses.append("m.expired_at IS NULL AND (m.expires_at IS NULL OR m.expires_at > now())")
        if self.kinds:
            clauses.append("m.kind = ANY(%s)")
            params.append(list(self.kinds))
        if self.metadata:
            clauses.append("m.metadata @> %s::jsonb")
            params.append(json.dumps(self.metadata))
        if self.event_after is not None:
            clauses.append("m.event_time >= %s")
            params.append(self.event_after)
        if self.event_before is not None:
            clauses.append("m.event_time < %s")
            params.append(self.event_before)
        return " AND ".join(clauses), params

    def queryset(self) -> QuerySet[Memory]:
        qs = Memory.objects.filter(namespace=self.namespace)
        if not self.include_superseded:
            qs = qs.filter(superseded_by__isnull=True)
        if not self.include_expired:
            qs = qs.filter(expired_at__isnull=True).filter(
                Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
            )
        if self.kinds:
            qs = qs.filter(kind__in=list(self.kinds))
        if self.metadata:
            qs = qs.filter(metadata__contains=self.metadata)
        if self.event_after is not None:
            qs = qs.filter(event_time__gte=self.event_after)
        if self.event_before is not None:
            qs = qs.filter(event_time__lt=self.event_before)
        return qs


@dataclass(kw_only=True)
class SearchHit:
    memory: Memory
    score: float
    vector_rank: int | None = None
    similarity: float | None = None
    text_rank: int | None = None
    text_score: float | None = None
    text_coverage: float | None = None


@dataclass(kw_only=True)
class SearchResult:
    hits: list[SearchHit]
    mode: Mode
    degraded: str | None = None
    pending_embeddings: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)


def vector_literal(vector: Sequence[float]) -> str:
    """pgvector's text form, for raw SQL (`%s::vector`)."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def _vector_candidates(
    filters: MemoryFilters, query_vector: list[float], limit: int, min_similarity: float | None
) -> list[tuple[Any, float]]:
    where, params = filters.sql()
    # Only vectors of the query's model: two models' vectors are not comparable (`reembed` moves old ones over).
    sql = (
        f"SELECT m.id, m.embedding <=> %s::vector AS distance FROM memory_memory m "  # noqa: S608 - clauses are ours
        f"WHERE {where} AND m.embedding IS NOT NULL AND m.embedding_model = %s ORDER BY distance LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %s, true)", [str(max(settings.MEMORY_HNSW_EF_SEARCH, limit))]
        )
        cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        model = embeddings.model_id(embeddings.backend())
        cursor.execute(sql, [vector_literal(query_vector), *params, model, limit])
        rows = cursor.fetchall()
    # relaxed_order may return neighbours slightly out of order: sort again, then gate on similarity.
    ranked = sorted(((row[0], 1.0 - float(row[1])) for row in rows), key=lambda item: -item[1])
    if min_similarity is not None:
        ranked = [item for item in ranked if item[1] >= min_similarity]
    return ranked


def _query_lexemes(query: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tsvector_to_array(to_tsvector(%s::regconfig, %s))", [TEXT_SEARCH_CONFIG, query])
        row = cursor.fetchone()
    return list(row[0] or []) if row else []


def _quote_lexeme(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _at_least(lexemes: list[str], need: int) -> str:
    """tsquery text matching documents that hold at least `need` of `lexemes` (an OR of AND-combinations)."""
    quoted = [_quote_lexeme(lexeme) for lexeme in lexemes]
    if need <= 1:
        return " | ".join(quoted)
    return " | ".join("(" + " & ".join(group) + ")" for group in combinations(quoted, need))


def _text_candidates(
    filters: MemoryFilters, lexemes: list[str], limit: int, min_coverage: float
) -> list[tuple[Any, float, float]]:
    """(id, ts_rank_cd, coverage) of memories holding at least `min_coverage` of the query's lexemes.

    The "at least k of n words" rule is given to the GIN index as an OR of AND-combinations, so a common word
    alone does not drag thousands of rows through ranking (measured at 100k memories: benchmarks/memory). Long
    queries use fewer words per combination (≤ MAX_TSQUERY_COMBINATIONS) and the coverage check after it.
    """
    if not lexemes:
        return []
    need = max(1, math.ceil(min_coverage * len(lexemes)))
    head = lexemes[:MAX_PREFILTER_LEXEMES]
    need = min(need, len(head))
    while need > 1 and math.comb(len(head), need) > MAX_TSQUERY_COMBINATIONS:
        need -= 1
    where, params = filters.sql()
    sql = (
        "SELECT m.id, ts_rank_cd(m.search_vector, %s::tsquery, 32) AS rank, "  # noqa: S608 - clauses are ours
        "(SELECT count(*) FROM unnest(tsvector_to_array(m.search_vector)) AS lexeme WHERE lexeme = ANY(%s))"
        "::float / %s AS coverage "
        f"FROM memory_memory m WHERE {where} AND m.search_vector @@ %s::tsquery "
        "ORDER BY rank DESC, m.event_time DESC LIMIT %s"
    )
    ranking_query = _at_least(lexemes, 1)
    with connection.cursor() as cursor:
        cursor.execute(sql, [ranking_query, lexemes, len(lexemes), *params, _at_least(head, need), limit])
        rows = [(row[0], float(row[1]), float(row[2])) for row in cursor.fetchall()]
    return [row for row in rows if row[2] >= min_coverage]


def memory_search(
    *,
    filters: MemoryFilters,
    query: str,
    top_k: int = 10,
    mode: Mode = "hybrid",
    min_similarity: float | None = None,
    query_vector: list[float] | None = None,
) -> SearchResult:
    """Hybrid search in one namespace. `query_vector` skips embedding the query (benchmarks, callers with one).

    Memories still pending embedding are reachable through their words only; `pending_embeddings` counts them.
    """
    if not query.strip():
        raise MemoryQueryError("invalid_arguments", "query: must contain at least one non-space character")
    if top_k < 1 or top_k > 100:
        raise MemoryQueryError("invalid_arguments", f"top_k: must be between 1 and 100 (got {top_k})")
    timings: dict[str, float] = {}
    degraded: str | None = None
    use_vector = mode in ("hybrid", "vector")
    if use_vector and query_vector is None:
        started = time.perf_counter()
        try:
            query_vector = embeddings.backend().embed_query(query)
        except embeddings.EmbeddingError as exc:
            if mode == "vector":
                raise MemoryQueryError("embedding_unavailable", f"mode=vector needs embeddings: {exc}") from None
            degraded = f"text-only search: the query could not be embedded ({exc})"
            use_vector = False
        timings["embed_query"] = round((time.perf_counter() - started) * 1000, 2)
    effective: Mode = mode if use_vector else "text"
    candidates = min(max(top_k * 5, 50), 200)

    started = time.perf_counter()
    with transaction.atomic():
        vector_ranked = (
            _vector_candidates(filters, query_vector, candidates, min_similarity)
            if use_vector and query_vector is not None
            else []
        )
        text_ranked: list[tuple[Any, float, float]] = []
        if effective in ("hybrid", "text"):
            lexemes = _query_lexemes(query)
            # Hybrid: a text hit counts when it holds at least half of the query's words (one common word shared
            # with a long question is noise next to the vector list; measured on benchmarks/memory's set).
            text_ranked = _text_candidates(filters, lexemes, candidates, MIN_TEXT_COVERAGE)
            if effective == "text" and len(text_ranked) < top_k:
                # Words alone: fill up with memories sharing any word, after the better-covered ones.
                seen = {row[0] for row in text_ranked}
                more = _text_candidates(filters, lexemes, candidates, 1e-9)
                text_ranked += [row for row in more if row[0] not in seen]
        pending = 0
        if use_vector:
            pending = filters.queryset().filter(embedding_state=EmbeddingState.PENDING).count()
    timings["candidates"] = round((time.perf_counter() - started) * 1000, 2)

    fused: dict[Any, SearchHit] = {}
    for rank, (memory_id, similarity) in enumerate(vector_ranked, start=1):
        hit = fused.setdefault(memory_id, SearchHit(memory=None, score=0.0))  # type: ignore[arg-type]
        hit.score += 1.0 / (RRF_K + rank)
        hit.vector_rank, hit.similarity = rank, round(similarity, 4)
    for rank, (memory_id, text_score, coverage) in enumerate(text_ranked, start=1):
        hit = fused.setdefault(memory_id, SearchHit(memory=None, score=0.0))  # type: ignore[arg-type]
        hit.score += 1.0 / (RRF_K + rank)
        hit.text_rank, hit.text_score, hit.text_coverage = rank, round(text_score, 4), round(coverage, 3)
    best = sorted(fused.items(), key=lambda item: (-item[1].score, item[1].vector_rank or 10**6))[:top_k]
    rows = Memory.objects.in_bulk([memory_id for memory_id, _ in best])
    hits = []
    for memory_id, hit in best:
        if memory_id in rows:
            hit.memory = rows[memory_id]
            hit.score = round(hit.score, 6)
            hits.append(hit)
    return SearchResult(hits=hits, mode=effective, degraded=degraded, pending_embeddings=pending, timings_ms=timings)


# ----------------------------------------------------------------------------------------- timeline


_CURSOR_SALT = "apps.memory.memory_timeline.cursor"


def _encode_cursor(memory: Memory) -> str:
    """Signed, so a cursor's bounds are always ours: a crafted one cannot reach the query as a wrong-typed bound."""
    return signing.dumps([memory.event_time.isoformat(), str(memory.id)], salt=_CURSOR_SALT)


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        event_time, memory_id = signing.loads(cursor, salt=_CURSOR_SALT)
        return datetime.fromisoformat(event_time), str(memory_id)
    except (signing.BadSignature, ValueError, TypeError):
        raise MemoryQueryError(
            "invalid_arguments", "cursor: not a cursor from memory.timeline (pass next_cursor back unchanged)"
        ) from None


@dataclass(kw_only=True)
class TimelinePage:
    items: list[Memory]
    next_cursor: str | None
    buckets: list[dict[str, Any]] | None = None


def memory_timeline(
    *,
    filters: MemoryFilters,
    limit: int = 50,
    cursor: str | None = None,
    order: Literal["asc", "desc"] = "asc",
    bucket: Literal["day", "week"] | None = None,
) -> TimelinePage:
    """Memories by event time (ties by id), keyset-paginated; `buckets` counts the whole filtered range."""
    if limit < 1 or limit > 200:
        raise MemoryQueryError("invalid_arguments", f"limit: must be between 1 and 200 (got {limit})")
    qs = filters.queryset()
    page_qs = qs
    if cursor:
        after_time, after_id = _decode_cursor(cursor)
        if order == "asc":
            page_qs = page_qs.filter(Q(event_time__gt=after_time) | Q(event_time=after_time, id__gt=after_id))
        else:
            page_qs = page_qs.filter(Q(event_time__lt=after_time) | Q(event_time=after_time, id__lt=after_id))
    ordering = ("event_time", "id") if order == "asc" else ("-event_time", "-id")
    items = list(page_qs.order_by(*ordering)[: limit + 1])
    next_cursor = _encode_cursor(items[limit - 1]) if len(items) > limit else None
    buckets = None
    if bucket:
        trunc = TruncDay("event_time") if bucket == "day" else TruncWeek("event_time")
        rows = qs.annotate(bucket=trunc).values("bucket").annotate(count=Count("id")).order_by("bucket")
        if order == "desc":
            rows = rows.reverse()
        buckets = [{"start": row["bucket"].isoformat(), "count": row["count"]} for row in rows]
    return TimelinePage(items=items[:limit], next_cursor=next_cursor, buckets=buckets)
