"""Retrieval quality on held-out TweetQA questions: BM25, hybrid with the stock and the tuned embedding model,
and the cross-encoder reranker over each (interpolated with the retrieval score, ``search.rerank``, and alone),
with paired bootstrap 95% CIs against BM25.

Questions: every TweetQA question of the clean corpus's ``val`` split (``tweetlm data build`` puts each tweet, with
all its questions, in one split; ``tweetlm search train`` trains on the ``train`` split only, so no tweet of a
question here was trained on). Each question has one relevant post: its tweet. The index holds every TweetQA
tweet of both splits plus up to ``--max-distractors`` other posts of the corpus (seeded sample; 0: all of them).
Two indexes over the same posts: one embedded with the stock all-MiniLM-L6-v2, one with ``--model-dir/retriever``;
BM25 is the same in both. Hybrid rows fuse by the default linear fusion of z-scored scores (``hybrid, ...``) and by
RRF (``hybrid rrf, ...``). Reranking: ``--model-dir/reranker`` over the top N of a retriever (each pair scored
once, so every N in ``--rerank-top`` reuses the scores). Embeddings are cached in each index folder's
``embed_cache``, so a rerun embeds nothing.

UPR (``--upr CHECKPOINT``, Sachan et al., "Improving Passage Retrieval with Zero-Shot Question Generation",
2022): a tweetlm language model (e.g. the imported SmolLM2 base, ``tweetlm import smollm2-135m``) scores each of
the top N posts by the mean log-probability of the question's tokens after the chat instruction ``Passage:
<post>`` / ``Please write a question based on this passage.``. One forward pass of the language model per
candidate is far dearer than the cross-encoder's, so UPR runs on the first ``--upr-questions`` questions only and
gets its own table over those questions, with the cross-encoder rows and the retriever alone on the same
questions and the cost of each reranker per query at one thread.

    .venv/bin/tweetlm data build --corpus ../shared/corpora ../shared/formats --out runs/corpus13
    .venv/bin/tweetlm search train --corpus runs/corpus13 --out runs/search_model
    PYTHONPATH=src .venv/bin/python benchmarks/bench_search_quality.py --corpus runs/corpus13 \\
        --model-dir runs/search_model --max-distractors 30000

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


def prepare(corpus: Path, max_distractors: int, seed: int):
    """``(posts, questions)``: every TweetQA tweet plus up to ``max_distractors`` other posts (0: all), and the
    val split's ``[(question, tweet id)]``."""
    from tweetlm.data.corpus import read_corpus_posts

    posts = {s: read_corpus_posts(corpus, s)[0] for s in ("train", "val")}
    everything = posts["train"] + posts["val"]
    qa = [p for p in everything if p.labels.get("tweetqa")]
    other = [p for p in everything if not p.labels.get("tweetqa")]
    random.Random(seed).shuffle(other)
    if max_distractors:
        other = other[:max_distractors]
    questions = []
    for p in posts["val"]:
        for q in json.loads(p.labels.get("tweetqa") or "[]"):
            if (q.get("question") or "").strip():
                questions.append((q["question"].strip(), p.id))
    return qa + other, questions


def reciprocal_ranks(ranked: list[list[str]], relevant: list[str]):
    import numpy as np

    return np.array([1 / (r[:10].index(rel) + 1) if rel in r[:10] else 0.0 for r, rel in zip(ranked, relevant)])


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
    ap.add_argument("--corpus", type=Path, required=True, help="clean corpus folder (tweetlm data build)")
    ap.add_argument("--model-dir", type=Path, required=True, help="folder written by tweetlm search train")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_search_quality")
    ap.add_argument("--max-distractors", type=int, default=30000, help="non-TweetQA posts indexed (0: all)")
    ap.add_argument("--rerank-top", type=int, nargs="+", default=[10, 20], help="candidates reranked (0: none)")
    ap.add_argument("--rerank-weight", type=float, default=None,
                    help="the cross-encoder's share of the reranked order (default: search.rerank.DEFAULT_WEIGHT); "
                    "rows 'rerank alone' use it alone")  # fmt: skip
    ap.add_argument("--reranker", type=Path, default=None, help="cross-encoder folder (default: --model-dir/reranker)")
    ap.add_argument("--reranker-backend", default="torch", help="onnx-int8, onnx or torch (search.rerank.BACKENDS)")
    ap.add_argument("--upr", type=Path, default=None, help="tweetlm checkpoint for UPR query likelihood (see above)")
    ap.add_argument("--upr-questions", type=int, default=100, help="questions UPR reranks (the first N)")
    ap.add_argument("--upr-top", type=int, default=20, help="candidates UPR reranks per question (of hybrid, tuned)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args()
    args.rerank_top = [n for n in args.rerank_top if n > 0]
    needs = [args.corpus / "val.parquet", args.model_dir / "retriever", *([args.upr] if args.upr else [])]
    for need in needs + ([args.reranker or args.model_dir / "reranker"] if args.rerank_top else []):
        if not need.exists():
            print(f"{need} not found (see --help)", file=sys.stderr)
            return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch

    from tweetlm.search.embed import DEFAULT_MODEL, Embedder
    from tweetlm.search.index import SearchIndex, SearchParams
    from tweetlm.search.rerank import DEFAULT_WEIGHT, Reranker, interpolate

    if args.rerank_weight is None:
        args.rerank_weight = DEFAULT_WEIGHT

    torch.set_num_threads(args.threads)
    t0 = time.time()
    posts, questions = prepare(args.corpus, args.max_distractors, args.seed)
    print(f"{len(posts)} posts, {len(questions)} held-out questions; {time.time() - t0:.0f} s", file=sys.stderr)
    relevant = [pid for _, pid in questions]
    seconds: dict[str, float] = {}
    indexes, qvecs = {}, {}
    for name, model in (("stock", DEFAULT_MODEL), ("tuned", str(args.model_dir / "retriever"))):
        t0 = time.time()
        emb = Embedder(model, cache_dir=args.work / "embed_cache")
        idx = SearchIndex.create(args.work / name, model=model, overwrite=True, embedder=emb)
        from tqdm import tqdm

        with tqdm(total=len(posts), desc=f"embedding ({name})", unit="post") as bar:
            built = idx.add(posts, progress=bar.update)
        qvecs[name] = emb.encode([q for q, _ in questions]).astype(np.float32)
        indexes[name] = idx
        seconds[f"build_{name}"] = round(time.time() - t0, 1)
        print(f"{name}: {built['embedded']} posts embedded now; {seconds[f'build_{name}']} s", file=sys.stderr)

    depth = max([*args.rerank_top, 10, args.upr_top if args.upr else 0])
    runs: dict[str, list[list[str]]] = {}
    cands: dict[str, list[list]] = {}
    for label, name, mode, fusion in (
        ("bm25", "stock", "bm25", "linear"), ("dense, stock", "stock", "dense", "linear"),
        ("hybrid rrf, stock", "stock", "hybrid", "rrf"), ("hybrid, stock", "stock", "hybrid", "linear"),
        ("dense, tuned", "tuned", "dense", "linear"), ("hybrid rrf, tuned", "tuned", "hybrid", "rrf"),
        ("hybrid, tuned", "tuned", "hybrid", "linear"),
    ):  # fmt: skip
        t0 = time.time()
        sp = SearchParams(k=depth, mode=mode, collapse=False, fusion=fusion)
        hits = [indexes[name].search(q, sp, vector=v) for (q, _), v in zip(questions, qvecs[name])]
        seconds[label] = round(time.time() - t0, 1)
        cands[label] = hits
        runs[label] = [[h.id for h in hs[:10]] for hs in hits]

    reranker = (
        Reranker(args.reranker or args.model_dir / "reranker", backend=args.reranker_backend)
        if args.rerank_top
        else None
    )
    t0 = time.time()
    cache: dict[tuple[int, str], float] = {}
    for base in ("bm25", "hybrid, stock", "hybrid, tuned"):
        for n in args.rerank_top:
            for weight in sorted({args.rerank_weight, 1.0}):
                ranked = []
                for qi, ((q, _), hits) in enumerate(zip(questions, cands[base])):
                    head = hits[:n]
                    todo = [h for h in head if (qi, h.id) not in cache]
                    for h, s in zip(todo, reranker.scores(q, [h.text for h in todo])):
                        cache[(qi, h.id)] = float(s)
                    ce = np.array([cache[(qi, h.id)] for h in head])
                    combined = interpolate([h.score for h in head], ce, weight)
                    order = sorted(range(len(head)), key=lambda i: (-combined[i], i))
                    ranked.append([head[i].id for i in order])
                alone = " alone" if weight == 1.0 else ""
                runs[f"{base} + rerank{alone}@{n}"] = ranked
    seconds["rerank_all"] = round(time.time() - t0, 1)

    upr_table = None
    if args.upr:
        upr_table = _upr_rows(args, questions, cands, runs, relevant)

    # one query at a time, one thread: what a user waits for with the top 20 reranked (query embedding, both
    # retrievers, fusion, the cross-encoder over 20 posts), and the cross-encoder's part of it
    torch.set_num_threads(1)
    lat, lat_rr = [], []
    if reranker:
        idx = indexes["tuned"]
        idx.reranker = reranker
        reranker.top_n = 20
        for q, _ in questions[:3]:
            idx.search(q)  # warm-up: the query encoder's first call, the model's first batch
        for (q, _), hits in list(zip(questions, cands["hybrid, tuned"]))[:200]:
            t1 = time.perf_counter()
            idx.search(q, SearchParams(k=10))
            t2 = time.perf_counter()
            reranker.scores(q, [h.text for h in hits[:20]])
            lat.append(1000 * (t2 - t1))
            lat_rr.append(1000 * (time.perf_counter() - t2))
        idx.reranker = None
    torch.set_num_threads(args.threads)

    table = {name: metrics(r, relevant) for name, r in runs.items()}
    base_rr = reciprocal_ranks(runs["bm25"], relevant)
    rng = np.random.default_rng(args.seed)
    boot = rng.choice(len(base_rr), (2000, len(base_rr))).astype(np.int64)
    ci = {}
    for name, r in runs.items():
        diff = reciprocal_ranks(r, relevant) - base_rr
        lo, hi = np.percentile(diff[boot].mean(axis=1), [2.5, 97.5])
        ci[name] = (float(diff.mean()), float(lo), float(hi))
    bm = table["bm25"]["mrr@10"]
    print("| retriever | recall@1 | recall@10 | MRR@10 | nDCG@10 | MRR@10 vs BM25 (95% CI) | relative |")
    print("|---|---|---|---|---|---|---|")
    for name, m in table.items():
        d, lo, hi = ci[name]
        print(f"| {name} | {m['recall@1']:.4f} | {m['recall@10']:.4f} | {m['mrr@10']:.4f} | {m['ndcg@10']:.4f} | "
              f"{d:+.4f} ({lo:+.4f} .. {hi:+.4f}) | {100 * (m['mrr@10'] / bm - 1):+.1f}% |")  # fmt: skip
    p50, p95 = np.percentile(lat, [50, 95]) if lat else (float("nan"), float("nan"))
    r50, r95 = np.percentile(lat_rr, [50, 95]) if lat else (float("nan"), float("nan"))
    if lat:
        print(f"\nhybrid search with the top 20 reranked, one query at a time, one thread: p50 {p50:.1f} ms, p95 "
              f"{p95:.1f} ms; the cross-encoder's part: p50 {r50:.1f} ms, p95 {r95:.1f} ms")  # fmt: skip
    print(json.dumps({
        "bench": "search_quality", "posts": len(posts), "questions": len(questions),
        "metrics": {k: {m: round(v, 4) for m, v in t.items()} for k, t in table.items()},
        "mrr@10_minus_bm25_ci95": {k: [round(x, 4) for x in v] for k, v in ci.items()},
        "relative_mrr@10_vs_bm25": {k: round(t["mrr@10"] / bm - 1, 4) for k, t in table.items()},
        "search_rerank20_ms_one_thread": {"p50": round(float(p50), 1), "p95": round(float(p95), 1)} if lat else None,
        "rerank20_ms_one_thread": {"p50": round(float(r50), 1), "p95": round(float(r95), 1)} if lat else None,
        "reranker": None if reranker is None else {
            "path": str(reranker.path), "backend": reranker.backend, "weight": args.rerank_weight},
        "upr": upr_table,
        "seconds": seconds,
    }))  # fmt: skip
    return 0


def upr_scorer(checkpoint: Path, batch_size: int = 4):
    """``scores(query, texts) -> (len(texts),)`` float64: the mean log-probability (nats per token) of the query's
    tokens after each post's ``Passage: <post>`` / ``Please write a question based on this passage.`` user turn
    (the checkpoint's chat template, its generation prompt), under the checkpoint's language model (UPR)."""
    import numpy as np
    import torch

    from tweetlm.inference.engine import Engine

    engine = Engine.from_checkpoint(checkpoint, precision="float32")
    model, tok, chat = engine.model, engine.tok, engine.chat_format

    def scores(query: str, texts: list[str]) -> np.ndarray:
        q = tok.encode(query)
        out = np.zeros(len(texts))
        prompts = [chat.encode_prompt([{"role": "user", "content": f"Passage: {t}\nPlease write a question based "
                                        "on this passage."}]) for t in texts]  # fmt: skip
        order = sorted(range(len(texts)), key=lambda i: len(prompts[i]))  # like lengths together: little padding
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                rows = order[b : b + batch_size]
                seqs = [prompts[i] + q for i in rows]
                width = max(map(len, seqs))
                ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])  # right padding: causal, unseen
                logits = model(ids[:, :-1]).float()
                for r, i in enumerate(rows):
                    start = len(prompts[i]) - 1  # the position whose logits predict the query's first token
                    lp = torch.log_softmax(logits[r, start : start + len(q)], dim=-1)
                    out[i] = float(lp.gather(1, torch.tensor(q).unsqueeze(1)).mean())
        return out

    return scores


def _upr_rows(args, questions, cands, runs, relevant) -> dict:
    """UPR over the top ``--upr-top`` of the tuned hybrid retriever on the first ``--upr-questions`` questions:
    prints a table over those questions (BM25, the retriever, + cross-encoder, + UPR interpolated and alone) and
    each reranker's p50 ms per query at one thread (first 10 questions); returns it for the JSON line."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from tweetlm.search.rerank import interpolate

    n_q, top = min(args.upr_questions, len(questions)), args.upr_top
    score = upr_scorer(args.upr)
    base = "hybrid, tuned"  # the product's retriever; UPR over it only (a language model pass per candidate)
    upr: dict[tuple[int, str], float] = {}
    for qi in tqdm(range(n_q), desc="UPR", unit="question", file=sys.stderr):
        head = cands[base][qi][:top]
        for h, v in zip(head, score(questions[qi][0], [h.text for h in head])):
            upr[(qi, h.id)] = float(v)
    sub: dict[str, list[list[str]]] = {name: runs[name][:n_q] for name in ("bm25", base, f"{base} + rerank@{top}")
                                       if name in runs}  # fmt: skip
    for weight in sorted({args.rerank_weight, 1.0}):
        ranked = []
        for qi in range(n_q):
            head = cands[base][qi][:top]
            u = np.array([upr[(qi, h.id)] for h in head])
            combined = interpolate([h.score for h in head], u, weight, floor=0.0)
            ranked.append([head[i].id for i in sorted(range(len(head)), key=lambda i: (-combined[i], i))])
        sub[f"{base} + UPR{' alone' if weight == 1.0 else ''}@{top}"] = ranked

    def p50_ms(scores) -> float:  # one thread, the first 10 questions' top candidates
        torch.set_num_threads(1)
        ms = []
        for qi in range(min(10, n_q)):
            t = time.perf_counter()
            scores(questions[qi][0], [h.text for h in cands[base][qi][:top]])
            ms.append(1000 * (time.perf_counter() - t))
        torch.set_num_threads(args.threads)
        return round(float(np.median(ms)), 1)

    table = {name: metrics(r, relevant[:n_q]) for name, r in sub.items()}
    cost = {"upr_ms_per_query_p50": p50_ms(score)}
    if args.rerank_top:
        from tweetlm.search.rerank import Reranker

        rr = Reranker(args.reranker or args.model_dir / "reranker", backend="onnx-int8")
        cost["cross_encoder_onnx_int8_ms_per_query_p50"] = p50_ms(rr.scores)
    print(f"\nUPR ({args.upr}) on the first {n_q} questions, top {top}; weight {args.rerank_weight} when "
          "interpolated (plain z-scores of the mean log-probabilities)")  # fmt: skip
    print("| retriever | recall@1 | recall@10 | MRR@10 | nDCG@10 |\n|---|---|---|---|---|")
    for name, m in table.items():
        print(f"| {name} | {m['recall@1']:.4f} | {m['recall@10']:.4f} | {m['mrr@10']:.4f} | {m['ndcg@10']:.4f} |")
    print(
        f"reranking {top} candidates, one thread, p50 ms per query: " + ", ".join(f"{k} {v}" for k, v in cost.items())
    )
    return {"questions": n_q, "top": top, "checkpoint": str(args.upr),
            "metrics": {k: {m: round(v, 4) for m, v in t.items()} for k, t in table.items()}, **cost}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
