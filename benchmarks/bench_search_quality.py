"""Retrieval quality on TweetQA: BM25 (tantivy and bm25s), dense (HNSW and exact), and their RRF fusion.

Each TweetQA question (``../shared/corpora/tweetqa/train.json``) has one relevant post: the tweet it was asked
about. The index holds every TweetQA tweet plus distractors drawn (seeded shuffle) from all other shared corpora.
Metrics per retriever: recall@1, recall@10, MRR@10, nDCG@10 (one relevant post: 1/log2(rank+1)); plus the
recall@10 of the HNSW graph against exact search over the same vectors. Embeddings are cached in the index
folder (``embed_cache/``), so a rerun with the same or fewer distractors embeds nothing.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_search_quality.py --max-distractors 30000 --questions 2000

Prints a Markdown table, then one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"


def prepare(corpora: Path, max_distractors: int, num_questions: int, seed: int):
    """``(posts, questions, number of TweetQA records, number of TweetQA tweets)``: all TweetQA tweets plus up to
    ``max_distractors`` other posts, and ``[(question, relevant post id)]`` (a seeded sample of ``num_questions``;
    0: all)."""
    from tweetlm.data.clean import CleanConfig, dedup_key, normalize_text
    from tweetlm.search.posts import load_posts

    posts, _ = load_posts([corpora])
    qa = [p for p in posts if p.source.startswith("tweetqa")]
    other = [p for p in posts if not p.source.startswith("tweetqa")]
    random.Random(seed).shuffle(other)
    chosen = qa + other[:max_distractors]
    by_key = {dedup_key(p.text): p.id for p in chosen}
    records = json.loads((corpora / "tweetqa" / "train.json").read_text())
    cfg = CleanConfig()
    questions = []
    for r in records:
        pid = by_key.get(dedup_key(normalize_text(r["Tweet"], cfg)))
        if pid is not None and r.get("Question"):
            questions.append((r["Question"], pid))
    if num_questions and num_questions < len(questions):
        questions = random.Random(seed).sample(questions, num_questions)
    return chosen, questions, len(records), len(qa)


def metrics(ranked: list[list[str]], relevant: list[str]) -> dict:
    r1 = r10 = mrr = ndcg = 0.0
    for ids, rel in zip(ranked, relevant):
        top = ids[:10]
        if rel in top:
            rank = top.index(rel) + 1
            r1 += rank == 1
            r10 += 1
            mrr += 1 / rank
            ndcg += 1 / math.log2(rank + 1)
    n = max(len(relevant), 1)
    return {"recall@1": r1 / n, "recall@10": r10 / n, "mrr@10": mrr / n, "ndcg@10": ndcg / n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", type=Path, default=CORPORA)
    ap.add_argument("--index", type=Path, default=REPO / "runs" / "bench_search" / "index")
    ap.add_argument("--max-distractors", type=int, default=30000, help="posts from other corpora (0: none)")
    ap.add_argument("--questions", type=int, default=2000, help="questions sampled (0: all 10,692)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for embedding")
    args = ap.parse_args()
    if not (args.corpora / "tweetqa" / "train.json").exists():
        print(f"TweetQA not found under {args.corpora}; pass --corpora", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch

    from tweetlm.search.analyze import tokenize
    from tweetlm.search.embed import Embedder
    from tweetlm.search.index import SearchIndex, SearchParams

    torch.set_num_threads(args.threads)
    t0 = time.time()
    posts, questions, num_records, num_qa = prepare(args.corpora, args.max_distractors, args.questions, args.seed)
    t_prep = time.time() - t0
    print(
        f"{len(posts)} posts ({num_qa} TweetQA tweets), {len(questions)} questions; prepared in {t_prep:.0f} s",
        file=sys.stderr,
    )

    emb = Embedder(cache_dir=args.index / "embed_cache")
    t0 = time.time()
    idx = SearchIndex.create(args.index, overwrite=True, embedder=emb)
    built = idx.add(posts)
    t_build = time.time() - t0
    t0 = time.time()
    qvecs = emb.encode([q for q, _ in questions]).astype(np.float32)
    t_qemb = time.time() - t0
    print(
        f"index built in {t_build:.0f} s ({built['embedded']} posts embedded, the rest cached); "
        f"questions embedded in {t_qemb:.0f} s",
        file=sys.stderr,
    )

    relevant = [pid for _, pid in questions]
    runs: dict[str, list[list[str]]] = {}
    secs: dict[str, float] = {}
    settings = {
        "bm25 (tantivy)": SearchParams(k=10, mode="bm25", collapse=False),
        "dense (HNSW)": SearchParams(k=10, mode="dense", collapse=False, exact_below=0),
        "dense (exact)": SearchParams(k=10, mode="dense", collapse=False, exact_dense=True),
        "hybrid RRF k=60": SearchParams(k=10, mode="hybrid", collapse=False),
        "hybrid RRF k=60 + collapse": SearchParams(k=10, mode="hybrid", collapse=True),
    }
    for name, sp in settings.items():
        t0 = time.time()
        runs[name] = [[h.id for h in idx.search(q, sp, vector=v)] for (q, _), v in zip(questions, qvecs)]
        secs[name] = time.time() - t0

    import bm25s

    t0 = time.time()
    ids = [p.id for p in posts]
    bm = bm25s.BM25(k1=1.2, b=0.75, method="lucene")  # tantivy's parameters, same tokens
    bm.index([tokenize(p.text) for p in posts], show_progress=False)
    t_bm25s_build = time.time() - t0
    t0 = time.time()
    qtok = [tokenize(q) or ["<empty>"] for q, _ in questions]
    docs, _ = bm.retrieve(qtok, k=10, show_progress=False, n_threads=1)
    runs["bm25 (bm25s)"] = [[ids[int(d)] for d in row] for row in docs]
    secs["bm25 (bm25s)"] = time.time() - t0

    table = {name: metrics(runs[name], relevant) for name in runs}
    ann = runs["dense (HNSW)"]
    exact = runs["dense (exact)"]
    ann_recall = float(np.mean([len(set(a) & set(e)) / max(len(e), 1) for a, e in zip(ann, exact)]))

    order = [
        "bm25 (tantivy)",
        "bm25 (bm25s)",
        "dense (HNSW)",
        "dense (exact)",
        "hybrid RRF k=60",
        "hybrid RRF k=60 + collapse",
    ]
    print("| retriever | recall@1 | recall@10 | MRR@10 | nDCG@10 | ms/query |")
    print("|---|---|---|---|---|---|")
    for name in order:
        m = table[name]
        print(
            f"| {name} | {m['recall@1']:.4f} | {m['recall@10']:.4f} | {m['mrr@10']:.4f} | {m['ndcg@10']:.4f} | "
            f"{1000 * secs[name] / len(questions):.1f} |"
        )
    print(f"\nHNSW recall@10 against exact search: {ann_recall:.4f}")
    fusion_gain = table["hybrid RRF k=60"]["mrr@10"] - table["bm25 (tantivy)"]["mrr@10"]

    def rr(ranked: list[list[str]]) -> np.ndarray:
        return np.array([1 / (r[:10].index(rel) + 1) if rel in r[:10] else 0.0 for r, rel in zip(ranked, relevant)])

    diff = rr(runs["hybrid RRF k=60"]) - rr(runs["bm25 (tantivy)"])
    boot = np.random.default_rng(args.seed).choice(len(diff), (2000, len(diff))).astype(np.int64)
    lo_ci, hi_ci = np.percentile(diff[boot].mean(axis=1), [2.5, 97.5])
    print(f"fusion - BM25 MRR@10: {fusion_gain:+.4f} (paired bootstrap 95% CI {lo_ci:+.4f} .. {hi_ci:+.4f})")
    print(
        json.dumps(
            {
                "bench": "search_quality",
                "posts": len(posts),
                "tweetqa_tweets": num_qa,
                "distractors": len(posts) - num_qa,
                "questions": len(questions),
                "tweetqa_records": num_records,
                "metrics": {k: {m: round(v, 4) for m, v in table[k].items()} for k in order},
                "ann_recall@10_vs_exact": round(ann_recall, 4),
                "fusion_minus_bm25_mrr@10": round(fusion_gain, 4),
                "fusion_minus_bm25_mrr@10_ci95": [round(float(lo_ci), 4), round(float(hi_ci), 4)],
                "fusion_beats_bm25_mrr@10": fusion_gain > 0,
                "seconds": {
                    "prepare": round(t_prep, 1),
                    "build": round(t_build, 1),
                    "embed_questions": round(t_qemb, 1),
                    "bm25s_build": round(t_bm25s_build, 1),
                    **{k: round(v, 1) for k, v in secs.items()},
                },
                "posts_embedded_now": built["embedded"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
