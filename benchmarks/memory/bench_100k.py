"""Memory at scale: store throughput, embedding throughput, memory.search latency, HNSW recall@10 vs exact.

    .venv/bin/python benchmarks/memory/bench_100k.py --n 100000 --embed 100000 --queries 300

Runs in a database of its own (`bench_memory_100k`) on the embedded PostgreSQL (or DATABASE_URL's server).
1. store: `services.memory_store` in calls of 100 items (the tool's path minus JSON-RPC), one namespace.
2. embed: `services.memory_embed_batch` (the `memory` worker's path: claim, embed with the local model, write
   vectors) over the first `--embed` memories. With `--embed` < n the remaining vectors are SYNTHETIC: a real
   vector of an embedded memory plus gaussian noise (renormalised) — said in the output. The HNSW index is
   dropped during the bulk embed and rebuilt after (its build time is reported), as `reembed` of a big table
   would best do.
3. search: `selectors.memory_search` (what `memory.search` calls) in hybrid mode, top_k=10, on distinct queries
   that are not stored sentences; the query is embedded in-process by the same local model. p50/p95 overall and
   split into query embedding and database time; text-only mode too.
4. recall@10: the vector half with HNSW (`hnsw.ef_search` = MEMORY_HNSW_EF_SEARCH, iterative scan) against an
   exact scan (index scans disabled) for the same query vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _setup import django_on  # noqa: E402

SUBJECTS = (
    "The billing service",
    "Our mobile app",
    "The staging cluster",
    "Priya's team",
    "The search index",
    "The data warehouse",
    "The login page",
    "The payment gateway",
    "The support inbox",
    "The nightly backup",
    "The marketing site",
    "Carlos",
    "The design system",
    "The analytics pipeline",
    "The export job",
    "Lena",
    "The office printer",
    "The VPN",
    "The CI pipeline",
    "The on-call rotation",
    "Globex's account",
    "The recommendation model",
    "The invoice generator",
    "The load balancer",
    "The message queue",
    "The customer portal",
    "The admin panel",
    "Our API gateway",
    "The release train",
    "The QA team",
    "The security scanner",
    "The feature flag service",
    "Tom",
    "The onboarding flow",
    "The audit log",
    "The cache layer",
    "The email sender",
    "The GPU budget",
    "The wiki",
    "Aisha's project",
)
VERBS = (
    "was migrated to",
    "started failing with",
    "now depends on",
    "was slowed down by",
    "is blocked by",
    "was upgraded to use",
    "should be moved to",
    "reported problems with",
    "was reviewed together with",
    "needs a fix for",
    "runs faster since adopting",
    "is owned by the same people as",
    "was merged into",
    "was rolled back because of",
    "has a weekly meeting about",
    "got a budget increase for",
    "was documented alongside",
    "is monitored through",
    "is deprecated in favour of",
    "shares a database with",
)
OBJECTS = (
    "the new Kubernetes cluster",
    "a memory leak",
    "the Postgres 17 upgrade",
    "timeouts in the EU region",
    "the Redis sentinel setup",
    "an expired certificate",
    "the vendor's REST API",
    "the quarterly roadmap",
    "a flaky integration test",
    "the GDPR review",
    "the new pricing page",
    "Terraform modules",
    "disk pressure",
    "the SSO rollout",
    "a noisy neighbour",
    "the rate limiter",
    "the legacy PHP code",
    "a schema change",
    "the dark mode launch",
    "the accessibility audit",
    "a DNS misconfiguration",
    "the Kafka consumer group",
    "ClickHouse",
    "a spike in 502 errors",
    "the Black Friday freeze",
)
CONTEXTS = (
    "last Monday",
    "during the offsite",
    "before the board meeting",
    "after the incident review",
    "in sprint 42",
    "according to the retro notes",
    "per the customer's request",
    "since version 4.2",
    "as agreed with finance",
    "while Lena was on leave",
    "in the Lisbon office",
    "over the weekend",
    "for the third time this month",
    "ahead of the SOC 2 audit",
    "after two approvals",
    "in the EU region only",
    "as a temporary workaround",
    "until the end of the quarter",
    "behind a feature flag",
    "on the night shift",
)
QUESTION_STARTS = (
    "what happened with",
    "any news about",
    "problems related to",
    "who handles",
    "status of",
    "what changed for",
    "history of",
    "issues with",
    "plans for",
    "what do we know about",
)


def sentences(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(CONTEXTS)}."
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def queries(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [
        f"{rng.choice(QUESTION_STARTS)} {rng.choice(SUBJECTS).lower()} and {rng.choice(OBJECTS)} #{i}" for i in range(n)
    ]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--embed", type=int, default=None, help="memories embedded for real (default: all)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--reuse", action="store_true", help="keep an existing data set of the same size")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    embed_n = args.n if args.embed is None else min(args.embed, args.n)
    django_on("bench_memory_100k")

    from django.conf import settings
    from django.db import connection, transaction

    from apps.memory import embeddings, selectors, services
    from apps.memory.models import EmbeddingState, Memory

    namespace = "bench"
    results: dict[str, object] = {"n": args.n, "embedded_for_real": embed_n, "load_before": os.getloadavg()}
    existing = Memory.objects.filter(namespace=namespace).count()
    if not (args.reuse and existing == args.n):
        Memory.objects.filter(namespace=namespace).delete()
        texts = sentences(args.n)
        # 1. store
        started = time.perf_counter()
        for start in range(0, len(texts), 100):
            services.memory_store(
                namespace=namespace,
                items=[services.MemoryInput(content=t, kind="note") for t in texts[start : start + 100]],
                source={"tool": "benchmarks/memory/bench_100k.py"},
            )
        store_s = time.perf_counter() - started
        results["store_items_per_s"] = round(args.n / store_s, 1)
        print(f"store: {args.n} memories in {store_s:.1f} s = {args.n / store_s:.0f} items/s", flush=True)

        # 2. embed (index dropped for the bulk pass, rebuilt after)
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS memory_embedding_hnsw")
        embedder = embeddings.backend()
        embedder.embed(["warm-up"])  # model load is a one-off per worker process, not throughput
        started = time.perf_counter()
        done = 0
        while done < embed_n:
            report = services.memory_embed_batch(batch_size=min(256, embed_n - done))
            if report.embedded == 0:
                break
            done += report.embedded
            if done % 5120 < 256:
                print(f"  embedded {done}/{embed_n} ({done / (time.perf_counter() - started):.0f}/s)", flush=True)
        embed_s = time.perf_counter() - started
        results["embed_items_per_s"] = round(done / embed_s, 1)
        results["store_with_embedding_items_per_s"] = round(1 / (1 / results["store_items_per_s"] + embed_s / done), 1)
        print(f"embed: {done} memories in {embed_s:.1f} s = {done / embed_s:.0f} items/s (batch 256)", flush=True)
        if done < args.n:
            import numpy as np

            rng = np.random.default_rng(3)
            real = np.array(
                [
                    list(v)
                    for v in Memory.objects.filter(namespace=namespace, embedding_state="ready").values_list(
                        "embedding", flat=True
                    )[:embed_n]
                ],
                dtype=np.float32,
            )
            pending = list(
                Memory.objects.filter(namespace=namespace, embedding_state=EmbeddingState.PENDING).values_list(
                    "id", flat=True
                )
            )
            with connection.cursor() as cursor:
                cursor.execute("CREATE TEMP TABLE synth (id uuid, v vector(384))")
                with cursor.copy("COPY synth (id, v) FROM STDIN") as copy:
                    for memory_id in pending:
                        vector = real[rng.integers(len(real))] + rng.normal(0, 0.03, 384).astype(np.float32)
                        vector /= np.linalg.norm(vector)
                        copy.write_row([memory_id, selectors.vector_literal(vector.tolist())])
                cursor.execute(
                    "UPDATE memory_memory m SET embedding = s.v, embedding_state = 'ready', "
                    "embedding_model = 'synthetic' FROM synth s WHERE m.id = s.id"
                )
                cursor.execute("DROP TABLE synth")
            print(f"synthetic vectors for {len(pending)} memories (real vector + N(0, 0.03) noise)", flush=True)
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '512MB'")
            cursor.execute(
                "CREATE INDEX memory_embedding_hnsw ON memory_memory USING hnsw (embedding vector_cosine_ops) "
                "WITH (m = 16, ef_construction = 64)"
            )
            cursor.execute("ANALYZE memory_memory")
        results["hnsw_build_s"] = round(time.perf_counter() - started, 1)
        print(f"hnsw build: {results['hnsw_build_s']} s", flush=True)

    # 3. search latency
    filters = selectors.MemoryFilters(namespace=namespace)
    qs = queries(args.queries)
    embeddings.backend().embed(["warm-up"])
    for text in qs[:10]:  # warm caches and the pool
        selectors.memory_search(filters=filters, query=text, top_k=10)
    total, embed_ms, db_ms, text_ms = [], [], [], []
    for text in qs:
        started = time.perf_counter()
        result = selectors.memory_search(filters=filters, query=text, top_k=10)
        total.append((time.perf_counter() - started) * 1000)
        if result.mode != "hybrid" or len(result.hits) != 10:
            raise SystemExit(f"search answered {result.mode} with {len(result.hits)} hits: {result.degraded}")
        embed_ms.append(result.timings_ms["embed_query"])
        db_ms.append(result.timings_ms["candidates"])
    for text in qs:
        started = time.perf_counter()
        selectors.memory_search(filters=filters, query=text, top_k=10, mode="text")
        text_ms.append((time.perf_counter() - started) * 1000)
    results["search_ms"] = {
        "hybrid_total": {"p50": pct(total, 50), "p95": pct(total, 95)},
        "hybrid_embed_query": {"p50": pct(embed_ms, 50), "p95": pct(embed_ms, 95)},
        "hybrid_database": {"p50": pct(db_ms, 50), "p95": pct(db_ms, 95)},
        "text_only_total": {"p50": pct(text_ms, 50), "p95": pct(text_ms, 95)},
    }
    print(json.dumps(results["search_ms"]), flush=True)

    # 4. recall@10: HNSW vs exact on the same query vectors
    vectors = embeddings.backend().embed(qs[:200])
    sql = (
        "SELECT m.id FROM memory_memory m WHERE m.namespace = %s AND m.superseded_by_id IS NULL "
        "AND m.embedding IS NOT NULL ORDER BY m.embedding <=> %s::vector LIMIT 10"
    )
    recalls, hnsw_ms, exact_ms = [], [], []
    for vector in vectors:
        literal = selectors.vector_literal(vector)
        with transaction.atomic():
            started = time.perf_counter()
            approx = {row[0] for row in selectors._vector_candidates(filters, vector, 10, None)}
            hnsw_ms.append((time.perf_counter() - started) * 1000)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_indexscan = off")
            started = time.perf_counter()
            cursor.execute(sql, [namespace, literal])
            exact = {row[0] for row in cursor.fetchall()}
            exact_ms.append((time.perf_counter() - started) * 1000)
        recalls.append(len(approx & exact) / 10)
    results["recall_at_10"] = round(statistics.fmean(recalls), 4)
    results["vector_query_ms"] = {
        "hnsw": {"p50": pct(hnsw_ms, 50), "p95": pct(hnsw_ms, 95)},
        "exact": {"p50": pct(exact_ms, 50), "p95": pct(exact_ms, 95)},
    }
    results["ef_search"] = settings.MEMORY_HNSW_EF_SEARCH
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=2), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
