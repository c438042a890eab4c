"""Search speed: index build posts/s, embedding posts/s, queries/s and p50/p95 latency at 1 thread per query
encoder, with the MRR@10 each gives; size, memory.

The posts and questions are ``bench_search_quality``'s: every TweetQA tweet of a clean corpus plus
``--max-distractors`` other posts (seeded), and the held-out (val split) TweetQA questions, ``--queries`` of them;
vectors come from the embedding cache ``--cache`` when present (by default the quality benchmark's), so the
build measures tantivy + usearch + metadata, and the embedding rate is measured apart on ``--embed-sample`` posts
with no cache. Build time with embedding = posts / (1/build rate + 1/embed rate). Queries are timed end to end
(query embedding, both retrievers, fusion) one at a time with torch,
ONNX Runtime, usearch and tantivy on one thread, for each query encoder (``embed.QUERY_ENCODERS``; the stock one
is ``sentence-transformers``, fp32 ``SentenceTransformer.encode``). Corpus vectors are the same for all. Per
encoder: the cosine of its query vectors to fp32 ones, and p50/p95 ms and MRR@10 / recall@10 per mode (bm25,
dense, hybrid); BM25 does not embed the query and is measured once.

    .venv/bin/tweetlm data build --corpus ../shared/corpora ../shared/formats --out runs/corpus13
    PYTHONPATH=src .venv/bin/python benchmarks/bench_search_speed.py --corpus runs/corpus13 --queries 300

Prints a Markdown table, then one JSON line last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

with contextlib.suppress(ImportError):  # before usearch: tweetlm.search.segment._import_onnxruntime_first
    import onnxruntime  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_search_quality import metrics  # noqa: E402
from bench_search_quality import prepare as quality_prepare  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def prepare(corpus: Path, max_distractors: int, num_questions: int, seed: int):
    """``(posts, questions, number of TweetQA tweets)``: the posts and held-out questions of
    ``bench_search_quality.prepare`` (every TweetQA tweet of a clean corpus plus ``max_distractors`` other posts;
    the val split's questions), questions a seeded sample of ``num_questions`` (0: all)."""
    posts, questions = quality_prepare(corpus, max_distractors, seed)
    if num_questions and num_questions < len(questions):
        questions = random.Random(seed).sample(questions, num_questions)
    return posts, questions, sum(1 for p in posts if p.labels.get("tweetqa"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, help="clean corpus folder (tweetlm data build)")
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "bench_search_quality" / "embed_cache",
                    help="embedding cache (default: bench_search_quality's, so its posts embed nothing)")  # fmt: skip
    ap.add_argument("--index", type=Path, default=REPO / "runs" / "bench_search" / "speed")
    ap.add_argument("--max-distractors", type=int, default=30000, help="non-TweetQA posts indexed (0: all)")
    ap.add_argument("--queries", type=int, default=300, help="TweetQA questions timed and scored")
    ap.add_argument(
        "--encoders",
        default="sentence-transformers,torch,onnx,onnx-int8,torch-int8",
        help="query encoders compared (comma-separated; the first is the baseline)",
    )
    ap.add_argument("--embed-sample", type=int, default=256, help="posts embedded without cache to time the model")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (args.corpus / "val.parquet").exists():
        print(f"{args.corpus} is not a clean corpus (no val.parquet): pass --corpus (see --help)", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch

    from tweetlm.search.embed import Embedder
    from tweetlm.search.index import SearchIndex, SearchParams

    torch.set_num_threads(1)
    posts, pairs, num_qa = prepare(args.corpus, args.max_distractors, args.queries, args.seed)
    encoders = args.encoders.split(",")

    emb = Embedder(cache_dir=args.cache)
    rng = random.Random(args.seed + 2)
    sample = [f"{p.text} #{rng.randrange(10**9)}" for p in posts[: args.embed_sample]]  # never in the cache
    t0 = time.time()
    Embedder(cache_dir=None).encode(sample)
    embed_rate = len(sample) / (time.time() - t0)

    t0 = time.time()
    idx = SearchIndex.create(args.index, overwrite=True, embedder=emb)
    built = idx.add(posts)
    t_build = time.time() - t0
    build_rate = len(posts) / t_build
    size = idx.info()["bytes"]

    questions = [q for q, _ in pairs]
    relevant = [pid for _, pid in pairs]
    modes = {"bm25": SearchParams(k=10, mode="bm25"), "dense": SearchParams(k=10, mode="dense")}
    modes["hybrid"] = SearchParams(k=10)
    fp32 = np.stack([Embedder(query_encoder="torch").encode_query(q) for q in questions])
    rows: dict[tuple[str, str], dict] = {}
    cosine: dict[str, dict] = {}
    for enc in encoders:
        qidx = SearchIndex.open(args.index, query_encoder=enc)
        t0 = time.time()
        qidx.search(questions[0], modes["hybrid"])  # warm-up: encoder (ONNX: export once per model), index pages
        setup_s = time.time() - t0
        vecs = np.stack([qidx.embedder.encode_query(q) for q in questions])
        cos = np.einsum("nd,nd->n", vecs, fp32)
        cosine[enc] = {"min": float(cos.min()), "mean": float(cos.mean()), "first_query_s": round(setup_s, 1)}
        for name, sp in modes.items():
            if name == "bm25" and enc != encoders[0]:
                continue  # no query embedding: the same for every encoder
            ms, ranked = [], []
            for q in questions:
                t = time.perf_counter()
                hits = qidx.search(q, sp)
                ms.append(1000 * (time.perf_counter() - t))
                ranked.append([h.id for h in hits])
            rows[(enc if name != "bm25" else "-", name)] = {"ms": np.array(ms), **metrics(ranked, relevant)}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    base = {m: rows[(encoders[0], m)]["ms"] for m in ("dense", "hybrid")}
    print(
        "| query encoder | mode | p50 ms | p95 ms | queries/s | p50 vs stock | MRR@10 | recall@10 "
        "| cos to fp32 min / mean |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (enc, name), r in rows.items():
        a = r["ms"]
        ratio = f"{np.percentile(a, 50) / np.percentile(base[name], 50):.2f}x" if name in base else "-"
        cs = f"{cosine[enc]['min']:.4f} / {cosine[enc]['mean']:.4f}" if enc in cosine else "-"
        print(
            f"| {enc} | {name} | {np.percentile(a, 50):.1f} | {np.percentile(a, 95):.1f} | {1000 / a.mean():.1f} | "
            f"{ratio} | {r['mrr@10']:.4f} | {r['recall@10']:.4f} | {cs} |"
        )
    with_embed = len(posts) / (len(posts) / build_rate + len(posts) / embed_rate)
    print(
        f"\n{len(posts)} posts ({num_qa} TweetQA tweets), {len(questions)} questions, {len(idx.segments)} segments; "
        f"build {build_rate:.0f} posts/s with cached vectors "
        f"({built['embedded']} embedded now), embedding {embed_rate:.1f} posts/s, so {with_embed:.1f} posts/s "
        f"from scratch; index {size / 1e6:.1f} MB; peak RSS {peak_mb:.0f} MB"
    )
    print(
        json.dumps(
            {
                "bench": "search_speed",
                "posts": len(posts),
                "tweetqa_tweets": num_qa,
                "segments": len(idx.segments),
                "threads": 1,
                "build_posts_per_s_cached_vectors": round(build_rate, 1),
                "embed_posts_per_s": round(embed_rate, 1),
                "build_posts_per_s_with_embedding": round(with_embed, 1),
                "posts_embedded_now": built["embedded"],
                "index_bytes": size,
                "peak_rss_mb": round(peak_mb),
                "queries": len(questions),
                "stock_encoder": encoders[0],
                "query_cosine_to_fp32": {k: {m: round(v, 4) for m, v in c.items()} for k, c in cosine.items()},
                "modes": {
                    f"{enc}/{name}": {
                        "qps": round(1000 / r["ms"].mean(), 1),
                        "p50_ms": round(float(np.percentile(r["ms"], 50)), 2),
                        "p95_ms": round(float(np.percentile(r["ms"], 95)), 2),
                        "mrr@10": round(r["mrr@10"], 4),
                        "recall@10": round(r["recall@10"], 4),
                    }
                    for (enc, name), r in rows.items()
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
