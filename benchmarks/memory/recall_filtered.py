"""recall@10 of HNSW vs exact for a namespace of REAL vectors inside the 100k index (run bench_100k.py first).

    .venv/bin/python benchmarks/memory/recall_filtered.py [--queries 200]

Copies the 10,000 memories that bench_100k.py embedded for real into namespace `bench-real` (same vectors), so
the HNSW graph holds 110,000 vectors and a search in `bench-real` must filter: the case of per-principal
namespaces sharing one index. Compares `memory.search`'s vector half (HNSW + iterative scan) with an exact scan.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _setup import django_on  # noqa: E402
from bench_100k import pct, queries  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    django_on("bench_memory_100k")
    from django.conf import settings
    from django.db import connection, transaction

    from apps.memory import embeddings, selectors

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM memory_memory WHERE namespace = 'bench-real'")
        if cursor.fetchone()[0] == 0:
            cursor.execute(
                "INSERT INTO memory_memory (id, namespace, content, kind, key, metadata, source, event_time, "
                "ingested_at, supersede_reason, content_hash, embedding, embedding_state, embedding_model, "
                "embedding_error, embedding_attempts) SELECT gen_random_uuid(), 'bench-real', content, kind, key, "
                "metadata, source, event_time, ingested_at, '', content_hash, embedding, 'ready', embedding_model, "
                "'', 1 FROM memory_memory WHERE namespace = 'bench' AND embedding_model <> 'synthetic'"
            )
            cursor.execute("ANALYZE memory_memory")
        cursor.execute("SELECT count(*) FROM memory_memory WHERE namespace = 'bench-real'")
        size = cursor.fetchone()[0]
    filters = selectors.MemoryFilters(namespace="bench-real")
    vectors = embeddings.backend().embed(queries(args.queries, seed=23))
    sql = (
        "SELECT m.id FROM memory_memory m WHERE m.namespace = %s AND m.superseded_by_id IS NULL "
        "AND m.embedding IS NOT NULL ORDER BY m.embedding <=> %s::vector LIMIT 10"
    )
    recalls, approx_ms = [], []
    for vector in vectors:
        with transaction.atomic():
            started = time.perf_counter()
            approx = [row[0] for row in selectors._vector_candidates(filters, vector, 10, None)]
            approx_ms.append((time.perf_counter() - started) * 1000)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute(sql, ["bench-real", selectors.vector_literal(vector)])
            exact = {row[0] for row in cursor.fetchall()}
        recalls.append(len(set(approx) & exact) / 10)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        where, params = filters.sql()
        cursor.execute(
            f"EXPLAIN SELECT m.id FROM memory_memory m WHERE {where} AND m.embedding IS NOT NULL "  # noqa: S608
            "ORDER BY m.embedding <=> %s::vector LIMIT 50",
            [*params, selectors.vector_literal(vectors[0])],
        )
        plan = " / ".join(row[0].strip()[:70] for row in cursor.fetchall()[:2])
    result = {
        "namespace_size": size,
        "index_size": "bench (100k) + bench-real",
        "ef_search": settings.MEMORY_HNSW_EF_SEARCH,
        "recall_at_10": round(statistics.fmean(recalls), 4),
        "min_recall": min(recalls),
        "vector_query_ms": {"p50": pct(approx_ms, 50), "p95": pct(approx_ms, 95)},
        "plan": plan,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
