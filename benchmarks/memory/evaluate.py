"""Retrieval quality of memory.search on the project's labelled set: recall@5 and MRR for text, vector, hybrid.

    .venv/bin/python benchmarks/memory/evaluate.py [--json var/memory-eval.json]

Stores memories.tsv in a fresh namespace of the `bench_memory_eval` database, embeds them with the configured
backend (default: local all-MiniLM-L6-v2), then runs every query of queries.tsv through the same selector the
`memory.search` tool uses, in each mode, top_k=10.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _setup import django_on  # noqa: E402


def read_tsv(name: str) -> list[dict[str, str]]:
    with (HERE / name).open() as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    django_on("bench_memory_eval")

    from apps.memory import embeddings, selectors, services
    from apps.memory.models import Memory

    namespace = "eval"
    Memory.objects.filter(namespace=namespace).delete()
    memories = read_tsv("memories.tsv")
    queries = read_tsv("queries.tsv")
    label_to_id: dict[str, str] = {}
    for start in range(0, len(memories), 100):
        chunk = memories[start : start + 100]
        outcomes = services.memory_store(
            namespace=namespace,
            items=[services.MemoryInput(content=row["content"], kind=row["kind"]) for row in chunk],
            source={"tool": "benchmarks/memory/evaluate.py"},
        )
        for row, outcome in zip(chunk, outcomes, strict=True):
            label_to_id[str(outcome.memory.pk)] = row["id"]
    started = time.perf_counter()
    report = services.memory_embed_pending()
    embed_s = time.perf_counter() - started
    model = embeddings.model_id(embeddings.backend())
    print(
        f"{len(memories)} memories, {len(queries)} queries; embedded {report.embedded} with {model} in {embed_s:.1f} s"
    )

    results: dict[str, dict[str, float]] = {}
    filters = selectors.MemoryFilters(namespace=namespace)
    for mode in ("text", "vector", "hybrid"):
        per_type: dict[str, list[tuple[float, float]]] = {}
        for query in queries:
            relevant = set(query["relevant"].split(","))
            hits = selectors.memory_search(filters=filters, query=query["query"], top_k=10, mode=mode).hits
            labels = [label_to_id[str(hit.memory.pk)] for hit in hits]
            recall5 = len(relevant & set(labels[:5])) / len(relevant)
            rank = next((i for i, label in enumerate(labels, start=1) if label in relevant), None)
            rr = 1.0 / rank if rank else 0.0
            per_type.setdefault(query["type"], []).append((recall5, rr))
            per_type.setdefault("all", []).append((recall5, rr))
        results[mode] = {
            f"{kind}_{metric}": round(statistics.fmean(v[i] for v in values), 3)
            for kind, values in per_type.items()
            for i, metric in enumerate(("recall@5", "mrr"))
        }
    print()
    print(
        "| mode | recall@5 (all) | MRR (all) | recall@5 paraphrase | MRR paraphrase | recall@5 keyword | MRR keyword |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode, row in results.items():
        print(
            f"| {mode} | {row['all_recall@5']} | {row['all_mrr']} | {row['paraphrase_recall@5']} | "
            f"{row['paraphrase_mrr']} | {row['keyword_recall@5']} | {row['keyword_mrr']} |"
        )
    counts = {t: sum(1 for q in queries if q["type"] == t) for t in ("paraphrase", "keyword")}
    print(f"\nqueries: {counts}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": model, "queries": counts, "results": results}, indent=2))


if __name__ == "__main__":
    main()
