"""Search speed: index build posts/s, embedding posts/s, queries/s and p50/p95 latency at 1 thread, size, memory.

The posts are the shared corpora in the order ``bench_search_quality.py`` uses (TweetQA tweets, then a seeded
shuffle of the rest), the first ``--max-posts`` of them; vectors come from that benchmark's embedding cache when
present, so the build measures tantivy + usearch + metadata, and the embedding rate is measured apart on
``--embed-sample`` posts with no cache. Build time with embedding = posts / (1/build rate + 1/embed rate).
Queries are TweetQA questions, timed end to end (query embedding, both retrievers, fusion) one at a time with
torch, usearch and tantivy on one thread; BM25 alone is the baseline each mode is compared with.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_search_speed.py --max-posts 40000 --queries 300

Prints a Markdown table, then one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", type=Path, default=CORPORA)
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "bench_search" / "index" / "embed_cache")
    ap.add_argument("--index", type=Path, default=REPO / "runs" / "bench_search" / "speed")
    ap.add_argument("--max-posts", type=int, default=40000, help="posts indexed (0: the whole corpus)")
    ap.add_argument("--queries", type=int, default=300)
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
    from tweetlm.search.posts import load_posts

    torch.set_num_threads(1)
    posts, _ = load_posts([args.corpora])
    qa = [p for p in posts if p.source.startswith("tweetqa")]
    other = [p for p in posts if not p.source.startswith("tweetqa")]
    random.Random(args.seed).shuffle(other)
    posts = (qa + other)[: args.max_posts or None]

    emb = Embedder(cache_dir=args.cache)
    sample = [p.text for p in other[-args.embed_sample :]]  # the end of the shuffle: not in the cache
    t0 = time.time()
    Embedder(cache_dir=None).encode(sample)
    embed_rate = len(sample) / (time.time() - t0)

    t0 = time.time()
    idx = SearchIndex.create(args.index, overwrite=True, embedder=emb)
    built = idx.add(posts)
    t_build = time.time() - t0
    build_rate = len(posts) / t_build
    size = idx.info()["bytes"]

    records = json.loads((args.corpora / "tweetqa" / "train.json").read_text())
    questions = [r["Question"] for r in random.Random(args.seed + 1).sample(records, args.queries)]
    modes = {
        "bm25": SearchParams(k=10, mode="bm25"),
        "dense": SearchParams(k=10, mode="dense"),
        "hybrid": SearchParams(k=10),
        "hybrid + filters": SearchParams(k=10, langs=["en"], since="2010-01-01", until="2020-12-31"),
    }
    idx.search(questions[0], modes["hybrid"])  # warm-up: model and index pages
    lat: dict[str, np.ndarray] = {}
    for name, sp in modes.items():
        ms = []
        for q in questions:
            t = time.perf_counter()
            idx.search(q, sp)
            ms.append(1000 * (time.perf_counter() - t))
        lat[name] = np.array(ms)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    base = lat["bm25"].mean()
    print("| mode | queries/s | p50 ms | p95 ms | mean vs bm25 |")
    print("|---|---|---|---|---|")
    for name, a in lat.items():
        print(
            f"| {name} | {1000 / a.mean():.1f} | {np.percentile(a, 50):.1f} | {np.percentile(a, 95):.1f} | "
            f"{a.mean() / base:.1f}x |"
        )
    with_embed = len(posts) / (len(posts) / build_rate + len(posts) / embed_rate)
    print(
        f"\n{len(posts)} posts, {len(idx.segments)} segments; build {build_rate:.0f} posts/s with cached vectors "
        f"({built['embedded']} embedded now), embedding {embed_rate:.1f} posts/s, so {with_embed:.1f} posts/s "
        f"from scratch; index {size / 1e6:.1f} MB; peak RSS {peak_mb:.0f} MB"
    )
    print(
        json.dumps(
            {
                "bench": "search_speed",
                "posts": len(posts),
                "corpus_posts": len(qa) + len(other),
                "segments": len(idx.segments),
                "threads": 1,
                "build_posts_per_s_cached_vectors": round(build_rate, 1),
                "embed_posts_per_s": round(embed_rate, 1),
                "build_posts_per_s_with_embedding": round(with_embed, 1),
                "posts_embedded_now": built["embedded"],
                "index_bytes": size,
                "peak_rss_mb": round(peak_mb),
                "queries": len(questions),
                "latency_ms": {
                    k: {
                        "qps": round(1000 / a.mean(), 1),
                        "p50": round(float(np.percentile(a, 50)), 2),
                        "p95": round(float(np.percentile(a, 95)), 2),
                        "vs_bm25": round(float(a.mean() / base), 2),
                    }
                    for k, a in lat.items()
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
