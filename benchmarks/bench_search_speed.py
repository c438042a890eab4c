"""Search speed: index build posts/s, embedding posts/s, queries/s and p50/p95 latency at 1 thread per query
encoder, with the MRR@10 each gives; size, memory.

The posts are every TweetQA tweet plus ``--max-distractors`` posts of the other shared corpora (seeded shuffle;
``prepare``); vectors come from the embedding cache ``--cache`` when present, so the
build measures tantivy + usearch + metadata, and the embedding rate is measured apart on ``--embed-sample`` posts
with no cache. Build time with embedding = posts / (1/build rate + 1/embed rate). Queries are TweetQA questions
whose tweet is indexed, timed end to end (query embedding, both retrievers, fusion) one at a time with torch,
ONNX Runtime, usearch and tantivy on one thread, for each query encoder (``embed.QUERY_ENCODERS``; the stock one
is ``sentence-transformers``, fp32 ``SentenceTransformer.encode``). Corpus vectors are the same for all. Per
encoder: the cosine of its query vectors to fp32 ones, and p50/p95 ms and MRR@10 / recall@10 per mode (bm25,
dense, hybrid); BM25 does not embed the query and is measured once.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_search_speed.py --max-distractors 20000 --queries 300

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

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"


def prepare(corpora: Path, max_distractors: int, num_questions: int, seed: int):
    """``(posts, questions, number of TweetQA records, number of TweetQA tweets)``: all TweetQA tweets plus up to
    ``max_distractors`` other posts, and ``[(question, relevant post id)]`` (a seeded sample of ``num_questions``;
    0: all)."""
    from tweetlm.data.pipeline.config import PipelineConfig
    from tweetlm.data.pipeline.text import dedup_key, normalize_text
    from tweetlm.search.posts import load_posts

    posts, _ = load_posts([corpora])
    qa = [p for p in posts if p.source.startswith("tweetqa")]
    other = [p for p in posts if not p.source.startswith("tweetqa")]
    random.Random(seed).shuffle(other)
    chosen = qa + other[:max_distractors]
    by_key = {dedup_key(p.text): p.id for p in chosen}
    records = json.loads((corpora / "tweetqa" / "train.json").read_text())
    cfg = PipelineConfig()
    questions = []
    for r in records:
        pid = by_key.get(dedup_key(normalize_text(r["Tweet"], cfg)))
        if pid is not None and r.get("Question"):
            questions.append((r["Question"], pid))
    if num_questions and num_questions < len(questions):
        questions = random.Random(seed).sample(questions, num_questions)
    return chosen, questions, len(records), len(qa)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", type=Path, default=CORPORA)
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "bench_search" / "index" / "embed_cache")
    ap.add_argument("--index", type=Path, default=REPO / "runs" / "bench_search" / "speed")
    ap.add_argument("--max-distractors", type=int, default=20000, help="posts from other corpora (0: none)")
    ap.add_argument("--queries", type=int, default=300, help="TweetQA questions timed and scored")
    ap.add_argument(
        "--encoders",
        default="sentence-transformers,torch,onnx,onnx-int8,torch-int8",
        help="query encoders compared (comma-separated; the first is the baseline)",
    )
    ap.add_argument("--embed-sample", type=int, default=256, help="posts embedded without cache to time the model")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not args.corpora.is_dir():
        print(f"corpora not found at {args.corpora}; pass --corpora", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch

    from tweetlm.search.embed import Embedder
    from tweetlm.search.index import SearchIndex, SearchParams

    torch.set_num_threads(1)
    posts, pairs, _, num_qa = prepare(args.corpora, args.max_distractors, args.queries, args.seed)
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
